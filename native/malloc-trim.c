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
 * The Node-API declarations are written out here, not included: Node-API is a stable C ABI, the
 * host process (node, or the single executable) exports these symbols, and so the addon builds with
 * nothing but a C compiler (scripts/native.mjs), for x64 and, cross-compiled, for arm64.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);

extern napi_status napi_create_function(napi_env env, const char *utf8name, size_t length, napi_callback cb, void *data,
                                        napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *utf8name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value *result);

/* trim(): true when glibc gave memory back to the kernel, false when there was none to give. */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

__attribute__((visibility("default"))) int node_api_module_get_api_version_v1(void) { return 8; }

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", 4, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != 0) return NULL;
  return exports;
}
