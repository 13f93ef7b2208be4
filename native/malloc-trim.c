/*
 * devstreams' one native helper: glibc's malloc_trim(0) for JavaScript, as a Node-API addon.
 *
 * Every chunk a socket reads, and every TLS record Node decrypts, is a buffer glibc's malloc hands
 * out. A busy stream frees them by the hundred thousand, interleaved with allocations that live on,
 * and glibc gives back only the free space at the top of its heap: the rest stays resident for the
 * life of the process (an agent idle after carrying 256 MiB each way: 97 MB of its 174 MB RSS was
 * glibc's heap). malloc_trim(0) walks every arena's free chunks and hands their pages back to the
 * kernel (madvise MADV_DONTNEED). Nothing in Node calls it, hence this file; protocol/malloc-trim.ts
 * loads it and protocol/idle-memory.ts calls it once per idle period.
 *
 * It also sets glibc's trim and mapping thresholds (mallopt) for a relay while it carries streams:
 * see protocol/malloc-trim.ts, RELAY_HEAP_THRESHOLDS.
 *
 * The Node-API declarations are written out here, not included: Node-API is a stable C ABI, the
 * host process (node, or the single executable) exports these symbols, and so the addon builds with
 * nothing but a C compiler (scripts/native.mjs), for x64 and, cross-compiled, for arm64.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);

extern napi_status napi_create_function(napi_env env, const char *utf8name, size_t length, napi_callback cb, void *data,
                                        napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *utf8name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value *result);
extern napi_status napi_get_cb_info(napi_env env, napi_callback_info cbinfo, size_t *argc, napi_value *argv,
                                    napi_value *this_arg, void **data);
extern napi_status napi_get_value_int32(napi_env env, napi_value value, int32_t *result);

/* trim(): true when glibc gave memory back to the kernel, false when there was none to give. */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

/*
 * thresholds(trimBytes, mmapBytes): how much free memory at the top of glibc's heap free() lets
 * stand before it gives it back (mallopt M_TRIM_THRESHOLD), and from what size an allocation gets
 * its own mapping instead of heap space (M_MMAP_THRESHOLD). glibc starts at 128 KiB for both and
 * raises them itself only after freeing a large mapped chunk; setting either stops that. true when
 * glibc took both; false for anything but two positive int32s, or a value glibc refuses.
 */
static napi_value thresholds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  int32_t trim_bytes = 0, mmap_bytes = 0;
  bool ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == 0 && argc >= 2 &&
            napi_get_value_int32(env, argv[0], &trim_bytes) == 0 && napi_get_value_int32(env, argv[1], &mmap_bytes) == 0 &&
            trim_bytes > 0 && mmap_bytes > 0 && mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1 &&
            mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1;
  napi_value result = NULL;
  napi_get_boolean(env, ok, &result);
  return result;
}

__attribute__((visibility("default"))) int node_api_module_get_api_version_v1(void) { return 8; }

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", 4, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != 0) return NULL;
  if (napi_create_function(env, "thresholds", 10, thresholds, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "thresholds", fn) != 0) return NULL;
  return exports;
}
