// The network side of the rendezvous store (distributed.cpp): where rank 0 listens, which
// interface gloo uses, and the job token. With a token, rank 0's c10d TCPStore listens on
// loopback only and a gate on masterAddr:masterPort relays to it the connections that answer a
// challenge (HMAC-SHA1 of a fresh nonce, keyed by the token: the token never crosses the
// network); the other ranks reach the gate through a local relay that answers it. The store's
// own protocol is untouched. Gloo's connections between ranks are not gated and nothing is
// encrypted. POSIX only (a token is refused elsewhere).
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace densetorch::distributed::net {

// A socket listening on host:port (port 0: any free port), closed on destruction unless released.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener(const std::string& host, int port);
  ~Listener();
  int release();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
};

// The address of this machine that a connection to `host` leaves from (no packet is sent).
std::string local_address_towards(const std::string& host);

// HMAC-SHA1(key, message) in hex (RFC 2104 over c10's SHA-1).
std::string hmac_sha1_hex(const std::string& key, const std::string& message);

// Rank 0's gate: accepts on `listener` and relays each connection that proves the token to
// 127.0.0.1:store_port; refuses the others with a line saying why.
class Gate {
 public:
  Gate(std::unique_ptr<Listener> listener, int store_port, std::string token);
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The other ranks' side: checks the token against the gate at host:port once (throws
// DistributedError with the gate's answer; retries until `timeout` while nobody listens), then
// relays connections made to 127.0.0.1:port() through the gate.
class Relay {
 public:
  Relay(std::string host, int port, std::string token, std::chrono::milliseconds timeout);
  ~Relay();
  int port() const;
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether host:port greets like a gate within `wait` (a process without a token asks, to say so
// clearly instead of failing in the store's handshake).
bool is_gate(const std::string& host, int port, std::chrono::milliseconds wait);

}  // namespace densetorch::distributed::net
