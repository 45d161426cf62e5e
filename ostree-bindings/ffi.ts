/**
 * Raw koffi declarations for the parts of GLib/GIO/libostree 2022.7 this project uses.
 * Signatures follow shared/specs/ostree-objects.md §7. Only this folder imports koffi.
 *
 * Pointers are BigInt (koffi 3). Out-parameters are declared `_Out_ T *` and passed a one-element
 * array. Nothing here manages lifetimes; see handles.ts.
 */
import koffi from 'koffi';

const glib = koffi.load('libglib-2.0.so.0');
const gobject = koffi.load('libgobject-2.0.so.0');
const gio = koffi.load('libgio-2.0.so.0');
const libc = koffi.load('libc.so.6');
const ostree = koffi.load('libostree-1.so.1');

/** struct GError { GQuark domain; gint code; gchar *message; } (16 bytes on x86-64). */
export const GErrorStruct = koffi.struct('GError', {
  domain: 'uint32_t',
  code: 'int32_t',
  message: 'char *',
});

// GLib / GObject
export const g_free = glib.func('void g_free(void *p)');
export const g_error_free = glib.func('void g_error_free(void *e)');
export const g_quark_to_string = glib.func('const char *g_quark_to_string(uint32_t q)');
export const g_object_unref = gobject.func('void g_object_unref(void *o)');
export const g_variant_unref = glib.func('void g_variant_unref(void *v)');
export const g_variant_ref_sink = glib.func('void *g_variant_ref_sink(void *v)');
export const g_variant_get_data = glib.func('const void *g_variant_get_data(void *v)');
export const g_variant_get_size = glib.func('size_t g_variant_get_size(void *v)');
export const g_variant_new_from_bytes = glib.func(
  'void *g_variant_new_from_bytes(const char *type, void *bytes, int trusted)',
);
export const g_bytes_new = glib.func('void *g_bytes_new(const void *data, size_t size)');
export const g_bytes_unref = glib.func('void g_bytes_unref(void *b)');
export const g_bytes_get_data = glib.func('const void *g_bytes_get_data(void *b, _Out_ size_t *size)');
export const g_hash_table_get_keys_as_array = glib.func(
  'void **g_hash_table_get_keys_as_array(void *ht, _Out_ uint32_t *len)',
);
export const g_hash_table_lookup = glib.func('void *g_hash_table_lookup(void *ht, const void *key)');
export const g_hash_table_unref = glib.func('void g_hash_table_unref(void *ht)');

// GIO
export const g_file_new_for_path = gio.func('void *g_file_new_for_path(const char *path)');
export const g_memory_input_stream_new_from_bytes = gio.func(
  'void *g_memory_input_stream_new_from_bytes(void *bytes)',
);
export const g_unix_input_stream_new = gio.func('void *g_unix_input_stream_new(int fd, int close_fd)');
export const g_input_stream_read_all = gio.func(
  'int g_input_stream_read_all(void *s, void *buf, size_t count, _Out_ size_t *bytes_read, void *c, _Out_ void **err)',
);
export const g_input_stream_close = gio.func('int g_input_stream_close(void *s, void *c, _Out_ void **err)');
export const g_file_info_get_file_type = gio.func('int g_file_info_get_file_type(void *fi)');
export const g_file_info_get_attribute_uint32 = gio.func(
  'uint32_t g_file_info_get_attribute_uint32(void *fi, const char *attr)',
);
export const g_file_info_get_size = gio.func('int64_t g_file_info_get_size(void *fi)');
export const g_file_info_get_symlink_target = gio.func('const char *g_file_info_get_symlink_target(void *fi)');

// libc
export const pipe2 = libc.func('int pipe2(_Out_ int *fds, int flags)');
/** Copies native memory into a JS Buffer (passed as the destination pointer, no koffi view). */
export const memcpy = libc.func('void *memcpy(void *dst, const void *src, size_t n)');
/** ssize_t is declared int64_t: koffi maps ssize_t results to a type that loses the sign. */
export const lgetxattr = libc.func('int64_t lgetxattr(const char *path, const char *name, void *value, size_t size)');
export const flock = libc.func('int flock(int fd, int operation)');

// libostree
export const ostree_repo_new = ostree.func('void *ostree_repo_new(void *path)');
export const ostree_repo_open = ostree.func('int ostree_repo_open(void *self, void *c, _Out_ void **err)');
export const ostree_repo_create = ostree.func(
  'int ostree_repo_create(void *self, int mode, void *c, _Out_ void **err)',
);
export const ostree_repo_get_mode = ostree.func('int ostree_repo_get_mode(void *self)');
export const ostree_repo_resolve_rev = ostree.func(
  'int ostree_repo_resolve_rev(void *self, const char *refspec, int allow_noent, _Out_ void **out_rev, _Out_ void **err)',
);
export const ostree_repo_list_refs = ostree.func(
  'int ostree_repo_list_refs(void *self, const char *prefix, _Out_ void **out_refs, void *c, _Out_ void **err)',
);
export const ostree_repo_load_variant = ostree.func(
  'int ostree_repo_load_variant(void *self, int objtype, const char *sha256, _Out_ void **out, _Out_ void **err)',
);
export const ostree_repo_load_variant_if_exists = ostree.func(
  'int ostree_repo_load_variant_if_exists(void *self, int objtype, const char *sha256, _Out_ void **out, _Out_ void **err)',
);
export const ostree_repo_read_commit_detached_metadata = ostree.func(
  'int ostree_repo_read_commit_detached_metadata(void *self, const char *checksum, _Out_ void **out, void *c, _Out_ void **err)',
);
export const ostree_repo_write_commit_detached_metadata = ostree.func(
  'int ostree_repo_write_commit_detached_metadata(void *self, const char *checksum, void *metadata, void *c, _Out_ void **err)',
);
export const ostree_repo_has_object = ostree.func(
  'int ostree_repo_has_object(void *self, int objtype, const char *checksum, _Out_ int *out_have, void *c, _Out_ void **err)',
);
export const ostree_repo_load_file = ostree.func(
  'int ostree_repo_load_file(void *self, const char *checksum, _Out_ void **out_input, _Out_ void **out_info, _Out_ void **out_xattrs, void *c, _Out_ void **err)',
);
export const ostree_repo_load_object_stream = ostree.func(
  'int ostree_repo_load_object_stream(void *self, int objtype, const char *checksum, _Out_ void **out_input, _Out_ uint64_t *out_size, void *c, _Out_ void **err)',
);
export const ostree_repo_prepare_transaction = ostree.func(
  'int ostree_repo_prepare_transaction(void *self, _Out_ int *out_resume, void *c, _Out_ void **err)',
);
export const ostree_repo_commit_transaction = ostree.func(
  'int ostree_repo_commit_transaction(void *self, void *out_stats, void *c, _Out_ void **err)',
);
export const ostree_repo_abort_transaction = ostree.func(
  'int ostree_repo_abort_transaction(void *self, void *c, _Out_ void **err)',
);
export const ostree_validate_rev = ostree.func('int ostree_validate_rev(const char *rev, _Out_ void **err)');
export const ostree_repo_transaction_set_ref = ostree.func(
  'void ostree_repo_transaction_set_ref(void *self, const char *remote, const char *ref, const char *checksum)',
);
export const ostree_repo_set_ref_immediate = ostree.func(
  'int ostree_repo_set_ref_immediate(void *self, const char *remote, const char *ref, const char *checksum, void *c, _Out_ void **err)',
);
export const ostree_repo_write_metadata = ostree.func(
  'int ostree_repo_write_metadata(void *self, int objtype, const char *expected, void *object, _Out_ void **out_csum, void *c, _Out_ void **err)',
);
/** GCancellable: lets another thread (a signal handler) stop a blocking libostree read. */
export const g_cancellable_new = gio.func('void *g_cancellable_new()');
export const g_cancellable_cancel = gio.func('void g_cancellable_cancel(void *c)');
export const ostree_repo_write_content = ostree.func(
  'int ostree_repo_write_content(void *self, const char *expected, void *object_input, uint64_t length, _Out_ void **out_csum, void *c, _Out_ void **err)',
);
export const ostree_repo_traverse_commit = ostree.func(
  'int ostree_repo_traverse_commit(void *self, const char *checksum, int maxdepth, _Out_ void **out_reachable, void *c, _Out_ void **err)',
);
export const ostree_object_name_deserialize = ostree.func(
  'void ostree_object_name_deserialize(void *v, _Out_ const char **out_checksum, _Out_ int *out_objtype)',
);
export const ostree_repo_fsck_object = ostree.func(
  'int ostree_repo_fsck_object(void *self, int objtype, const char *sha256, void *c, _Out_ void **err)',
);
export const ostree_checksum_from_bytes = ostree.func('void *ostree_checksum_from_bytes(const uint8_t *csum)');
export const ostree_repo_sign_commit = ostree.func(
  'int ostree_repo_sign_commit(void *self, const char *commit, const char *key_id, const char *homedir, void *c, _Out_ void **err)',
);
export const ostree_repo_verify_commit_ext = ostree.func(
  'void *ostree_repo_verify_commit_ext(void *self, const char *commit, void *keyringdir, void *extra_keyring, void *c, _Out_ void **err)',
);
export const ostree_repo_gpg_verify_data = ostree.func(
  'void *ostree_repo_gpg_verify_data(void *self, const char *remote, void *data, void *signatures, void *keyringdir, void *extra_keyring, void *c, _Out_ void **err)',
);
export const ostree_gpg_verify_result_count_valid = ostree.func(
  'uint32_t ostree_gpg_verify_result_count_valid(void *r)',
);
export const ostree_gpg_verify_result_count_all = ostree.func('uint32_t ostree_gpg_verify_result_count_all(void *r)');
export const ostree_gpg_verify_result_describe = ostree.func(
  'void ostree_gpg_verify_result_describe(void *r, uint32_t idx, void *gstring, const char *line_prefix, int flags)',
);
export const ostree_gpg_verify_result_require_valid_signature = ostree.func(
  'int ostree_gpg_verify_result_require_valid_signature(void *r, _Out_ void **err)',
);
export const g_string_new = glib.func('void *g_string_new(const char *init)');
export const g_string_free = glib.func('void *g_string_free(void *s, int free_segment)');

export { koffi };
