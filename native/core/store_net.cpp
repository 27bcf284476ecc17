#include "store_net.h"

#ifndef _WIN32

#include "distributed.h"

#include <c10/util/hash.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace densetorch::distributed::net {

namespace detail {

// The accepting thread and the threads that each serve one connection; stop_all() sets `stop`
// and joins them all (the gate's and the relay's destructors).
struct Workers {
  std::atomic<bool> stop{false};
  std::thread acceptor;
  std::mutex mutex;
  std::list<std::thread> threads;
  template <typename F>
  void start(F&& f) {
    std::lock_guard<std::mutex> lock(mutex);
    threads.emplace_back(std::forward<F>(f));
  }
  void stop_all() {
    stop = true;
    if (acceptor.joinable()) acceptor.join();
    std::list<std::thread> all;
    {
      std::lock_guard<std::mutex> lock(mutex);
      all.swap(threads);
    }
    for (auto& t : all)
      if (t.joinable()) t.join();
  }
};

}  // namespace detail

namespace {

constexpr const char* kGreeting = "densetorch-store-gate 1 ";
constexpr std::chrono::milliseconds kPoll{200};         // how often idle threads look at `stop`
constexpr std::chrono::milliseconds kHandshake{10000};  // an answer to the challenge must come within this
constexpr std::chrono::milliseconds kGreetingWait{3000};  // a gate greets at once; a plain store never does

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: SO_NOSIGPIPE on each socket instead
#endif

// A socket of this process only (not inherited by children), that never raises SIGPIPE.
int own_socket(int fd) {
  if (fd < 0) return fd;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  return fd;
}

struct AddrInfo {
  addrinfo* list = nullptr;
  AddrInfo(const std::string& host, int socktype) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &list);
    if (rc != 0) throw DistributedError("cannot resolve the address '" + host + "': " + gai_strerror(rc));
  }
  ~AddrInfo() { freeaddrinfo(list); }
  AddrInfo(const AddrInfo&) = delete;
  AddrInfo& operator=(const AddrInfo&) = delete;
};

void set_port(sockaddr* addr, int port) {
  if (addr->sa_family == AF_INET) reinterpret_cast<sockaddr_in*>(addr)->sin_port = htons(static_cast<uint16_t>(port));
  if (addr->sa_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(addr)->sin6_port = htons(static_cast<uint16_t>(port));
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

// A TCP connection to host:port, or an invalid Fd (errno says why).
Fd connect_to(const std::string& host, int port) {
  AddrInfo info(host, SOCK_STREAM);
  for (addrinfo* a = info.list; a; a = a->ai_next) {
    Fd fd(own_socket(socket(a->ai_family, SOCK_STREAM, 0)));
    if (fd.fd < 0) continue;
    set_port(a->ai_addr, port);
    if (connect(fd.fd, a->ai_addr, a->ai_addrlen) == 0) {
      const int one = 1;
      setsockopt(fd.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
  }
  return Fd();
}

bool write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool write_line(int fd, const std::string& line) { return write_all(fd, line.data(), line.size()); }

// One line (without its newline) read byte by byte within `wait`; nullopt on timeout, EOF or a
// line longer than 512 bytes. Byte by byte so that nothing after the line is consumed.
std::optional<std::string> read_line(int fd, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::string line;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    char c = 0;
    const ssize_t r = recv(fd, &c, 1, 0);
    if (r <= 0) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
    if (line.size() > 512) return std::nullopt;
  }
}

std::string random_hex(std::size_t bytes) {
  std::random_device entropy;
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = entropy() & 0xff;
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

std::string hex_to_bytes(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Copies bytes both ways between a and b until one side closes or `stop` is set.
void pump(Fd a, Fd b, const std::atomic<bool>& stop) {
  pollfd fds[2] = {{a.fd, POLLIN, 0}, {b.fd, POLLIN, 0}};
  std::vector<char> buffer(1 << 16);
  while (!stop.load()) {
    const int n = poll(fds, 2, static_cast<int>(kPoll.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t r = recv(fds[i].fd, buffer.data(), buffer.size(), 0);
      if (r <= 0 || !write_all(fds[1 - i].fd, buffer.data(), static_cast<std::size_t>(r))) return;
    }
  }
}

// Accepts on `listen_fd` until `stop`, handing each connection to `serve` on a thread of its own.
template <typename Serve>
void accept_loop(int listen_fd, detail::Workers& workers, Serve serve) {
  while (!workers.stop.load()) {
    pollfd p{listen_fd, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(kPoll.count()));
    if (n <= 0) continue;
    Fd conn(own_socket(accept(listen_fd, nullptr, nullptr)));
    if (conn.fd < 0) continue;
    const int one = 1;
    setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    workers.start([serve, fd = conn.release()]() mutable { serve(Fd(fd)); });
  }
}

// The nonce of a gate's greeting on a fresh connection, or nullopt when none comes within `wait`
// (a plain store never greets).
std::optional<std::string> gate_nonce(int fd, std::chrono::milliseconds wait) {
  const auto greeting = read_line(fd, wait);
  if (!greeting || greeting->rfind(kGreeting, 0) != 0) return std::nullopt;
  return greeting->substr(std::strlen(kGreeting));
}

// The client half of the handshake on a fresh connection to the gate: "" when admitted, else
// the gate's refusal (or what went wrong).
std::string answer_challenge(int fd, const std::string& token) {
  const auto nonce = gate_nonce(fd, kGreetingWait);
  if (!nonce) return "no-gate";
  if (!write_line(fd, hmac_sha1_hex(token, *nonce) + "\n")) return "the connection closed during the handshake";
  const auto verdict = read_line(fd, kHandshake);
  if (!verdict) return "the connection closed during the handshake";
  return *verdict == "ok" ? "" : *verdict;
}

}  // namespace

Listener::Listener(const std::string& host, int want_port) {
  AddrInfo info(host, SOCK_STREAM);
  std::string error = "no address";
  for (addrinfo* a = info.list; a; a = a->ai_next) {
    Fd sock(own_socket(socket(a->ai_family, SOCK_STREAM, 0)));
    if (sock.fd < 0) continue;
    const int one = 1;
    setsockopt(sock.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    set_port(a->ai_addr, want_port);
    if (bind(sock.fd, a->ai_addr, a->ai_addrlen) == 0 && listen(sock.fd, 128) == 0) {
      sockaddr_storage me{};
      socklen_t len = sizeof me;
      getsockname(sock.fd, reinterpret_cast<sockaddr*>(&me), &len);
      port = me.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&me)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&me)->sin_port);
      fd = sock.release();
      return;
    }
    const int err = errno;
    error = std::strerror(err);
    if (err == EADDRNOTAVAIL)
      throw DistributedError("rank 0 hosts the group's store on masterAddr " + host + ", which is not an address of this "
                             "machine (set MASTER_ADDR to one of its own addresses, or DENSETORCH_STORE_BIND to the "
                             "address to listen on, e.g. 0.0.0.0 for every interface)");
    if (err == EADDRINUSE)
      throw DistributedError("port " + std::to_string(want_port) + " on " + host +
                             " is in use (another job's store?): choose another masterPort");
  }
  throw DistributedError("cannot listen on " + host + ":" + std::to_string(want_port) + ": " + error);
}

Listener::~Listener() {
  if (fd >= 0) close(fd);
}

int Listener::release() { return std::exchange(fd, -1); }

std::string local_address_towards(const std::string& host) {
  AddrInfo info(host, SOCK_DGRAM);
  for (addrinfo* a = info.list; a; a = a->ai_next) {
    Fd sock(own_socket(socket(a->ai_family, SOCK_DGRAM, 0)));
    if (sock.fd < 0) continue;
    set_port(a->ai_addr, 9);
    if (connect(sock.fd, a->ai_addr, a->ai_addrlen) != 0) continue;
    sockaddr_storage me{};
    socklen_t len = sizeof me;
    char text[NI_MAXHOST];
    if (getsockname(sock.fd, reinterpret_cast<sockaddr*>(&me), &len) == 0 &&
        getnameinfo(reinterpret_cast<sockaddr*>(&me), len, text, sizeof text, nullptr, 0, NI_NUMERICHOST) == 0)
      return text;
  }
  throw DistributedError("no interface of this machine reaches masterAddr " + host);
}

std::string hmac_sha1_hex(const std::string& key, const std::string& message) {
  constexpr std::size_t kBlock = 64;
  std::string k = key.size() > kBlock ? hex_to_bytes(c10::sha1(key).str()) : key;
  k.resize(kBlock, '\0');
  std::string inner(kBlock, '\0'), outer(kBlock, '\0');
  for (std::size_t i = 0; i < kBlock; ++i) {
    inner[i] = static_cast<char>(k[i] ^ 0x36);
    outer[i] = static_cast<char>(k[i] ^ 0x5c);
  }
  return c10::sha1(outer + hex_to_bytes(c10::sha1(inner + message).str())).str();
}

struct Gate::Impl {
  std::unique_ptr<Listener> listener;
  detail::Workers workers;
};

Gate::Gate(std::unique_ptr<Listener> listener, int store_port, std::string token) : impl_(std::make_unique<Impl>()) {
  impl_->listener = std::move(listener);
  impl_->workers.acceptor = std::thread([impl = impl_.get(), store_port, token = std::move(token)] {
    accept_loop(impl->listener->fd, impl->workers, [impl, store_port, token](Fd conn) {
      const std::string nonce = random_hex(16);
      if (!write_line(conn.fd, kGreeting + nonce + "\n")) return;
      const auto proof = read_line(conn.fd, kHandshake);
      if (!proof || !equal_constant_time(*proof, hmac_sha1_hex(token, nonce))) {
        write_line(conn.fd, "refused this process: the job requires its job token (DENSETORCH_JOB_TOKEN), and this process's does not match\n");
        return;
      }
      Fd store = connect_to("127.0.0.1", store_port);
      if (store.fd < 0 || !write_line(conn.fd, "ok\n")) return;
      pump(std::move(conn), std::move(store), impl->workers.stop);
    });
  });
}

Gate::~Gate() { impl_->workers.stop_all(); }

struct Relay::Impl {
  std::string host, token;
  int remote_port = 0;
  std::unique_ptr<Listener> listener;
  detail::Workers workers;
};

Relay::Relay(std::string host, int port, std::string token, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->token = std::move(token);
  impl_->remote_port = port;
  const std::string where = impl_->host + ":" + std::to_string(port);
  // The token is checked once up front, for a clear answer; rank 0 may not listen yet.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    Fd probe = connect_to(impl_->host, port);
    if (probe.fd >= 0) {
      const std::string verdict = answer_challenge(probe.fd, impl_->token);
      if (verdict.empty()) break;
      if (verdict == "no-gate")
        throw DistributedError("the job at " + where + " does not ask for a job token, but this process has one "
                               "(DENSETORCH_JOB_TOKEN): start every rank with the same token, or none");
      throw DistributedError("the job at " + where + " " + verdict);
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw DistributedError("nobody listens at " + where + " (rank 0 hosts the group's store there)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  impl_->listener = std::make_unique<Listener>("127.0.0.1", 0);
  impl_->workers.acceptor = std::thread([this] {
    accept_loop(impl_->listener->fd, impl_->workers, [impl = impl_.get()](Fd local) {
      Fd remote = connect_to(impl->host, impl->remote_port);
      if (remote.fd < 0 || !answer_challenge(remote.fd, impl->token).empty()) return;
      pump(std::move(local), std::move(remote), impl->workers.stop);
    });
  });
}

Relay::~Relay() { impl_->workers.stop_all(); }

int Relay::port() const { return impl_->listener->port; }

bool is_gate(const std::string& host, int port, std::chrono::milliseconds wait) {
  Fd probe = connect_to(host, port);
  if (probe.fd < 0) return false;
  return gate_nonce(probe.fd, wait).has_value();
}

}  // namespace densetorch::distributed::net

#endif
