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
 * see protocol/malloc-trim.ts, RELAY_HEAP_THRESHOLDS; and sends systemd's notifications for the
 * daemons (notify, below; protocol/sd-notify.ts), which Node has no socket for; widens the pipes
 * `devstreams connect` is given (pipeSize, below), which Node has no fcntl for; and names the
 * process's main thread (threadName, below), which Node 24 names "MainThread".
 *
 * The Node-API declarations are written out here, not included: Node-API is a stable C ABI, the
 * host process (node, or the single executable) exports these symbols, and so the addon builds with
 * nothing but a C compiler (scripts/native.mjs), for x64 and, cross-compiled, for arm64.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
extern napi_status napi_get_value_string_utf8(napi_env env, napi_value value, char *buf, size_t bufsize, size_t *result);
extern napi_status napi_create_int32(napi_env env, int32_t value, napi_value *result);

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

/*
 * notify(socketPath, message): systemd's sd_notify(3), which Node cannot do itself (no AF_UNIX
 * datagram sockets): one datagram of `message` to NOTIFY_SOCKET, a path or, starting with '@', an
 * abstract socket. Sent from this process, so systemd attributes it to the unit's main PID with no
 * race against a helper process's exit. Returns 0 when sent, an errno otherwise (EINVAL for
 * arguments that are not two strings, a path too long, or a message over 4 KiB).
 */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char message[4097];
  size_t path_len = 0, message_len = 0;
  int32_t err = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &path_len) != 0 ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof(message), &message_len) != 0 || path_len == 0 ||
      path_len >= sizeof(path) - 1 || message_len >= sizeof(message) - 1 || (path[0] != '/' && path[0] != '@')) {
    err = EINVAL;
  } else {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, path_len);
    if (path[0] == '@') addr.sun_path[0] = '\0';
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
    } else {
      ssize_t sent = sendto(fd, message, message_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
      if (sent < 0) err = errno;
      else if ((size_t)sent != message_len) err = EMSGSIZE;
      close(fd);
    }
  }
  napi_value result = NULL;
  napi_create_int32(env, err, &result);
  return result;
}

/*
 * pipeSize(fd, bytes): fcntl(F_SETPIPE_SZ), the capacity of the pipe `fd` is an end of (Linux: 64 KiB
 * unless set; up to /proc/sys/fs/pipe-max-size, 1 MiB by default, for an unprivileged process).
 * Returns the capacity the kernel set (it rounds up to a power of two pages), or minus an errno:
 * EBADF or EINVAL when `fd` is not a pipe, EPERM above the limit, EINVAL for arguments that are not
 * two non-negative int32s.
 */
static napi_value pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  int32_t fd = -1, bytes = 0, out = -EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == 0 && argc >= 2 && napi_get_value_int32(env, argv[0], &fd) == 0 &&
      napi_get_value_int32(env, argv[1], &bytes) == 0 && fd >= 0 && bytes > 0) {
    int r = fcntl(fd, F_SETPIPE_SZ, bytes);
    out = r < 0 ? -errno : r;
  }
  napi_value result = NULL;
  napi_create_int32(env, out, &result);
  return result;
}

/*
 * threadName(name): prctl(PR_SET_NAME), the calling thread's name: for the main thread, what ps,
 * top, pgrep and killall show as the process's name (/proc/PID/comm). Node 24 names its main thread
 * "MainThread"; process.title would do this too, but it also overwrites the command line ps shows.
 * The kernel keeps the first 15 bytes. Returns 0, or an errno (EINVAL for a name that is not a
 * string of 1 to 15 bytes).
 */
static napi_value thread_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  char name[17];
  size_t len = 0;
  int32_t err = EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == 0 && argc >= 1 &&
      napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) == 0 && len > 0 && len < 16) {
    err = prctl(PR_SET_NAME, name, 0, 0, 0) == 0 ? 0 : errno;
  }
  napi_value result = NULL;
  napi_create_int32(env, err, &result);
  return result;
}

__attribute__((visibility("default"))) int node_api_module_get_api_version_v1(void) { return 8; }

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", 4, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != 0) return NULL;
  if (napi_create_function(env, "thresholds", 10, thresholds, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "thresholds", fn) != 0) return NULL;
  if (napi_create_function(env, "notify", 6, notify, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "notify", fn) != 0) return NULL;
  if (napi_create_function(env, "pipeSize", 8, pipe_size, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "pipeSize", fn) != 0) return NULL;
  if (napi_create_function(env, "threadName", 10, thread_name, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "threadName", fn) != 0) return NULL;
  return exports;
}
