// A C++ test of native/core/store_net: HMAC-SHA1 against RFC 2202's test vectors, and the job
// token's gate and relay on loopback in front of an echo server standing in for the store: the
// right token is relayed both ways, a wrong one is refused with the gate's message, a process
// without one can tell a gate from a plain store. Compiled and run by test/20-native-core.test.js;
// prints "ok" and exits 0, or what went wrong and exits 1.
#include "check.h"
#include "../../native/core/store_net.cpp"

#include <cstdio>
#include <string>
#include <thread>

using namespace densetorch::distributed;
using namespace densetorch::distributed::net;  // and store_net.cpp's own helpers (connect_to, read_line, ...)
using densetorch_test::check;
using densetorch_test::failures;

namespace {

void hmac() {
  check(net::hmac_sha1_hex(std::string(20, '\x0b'), "Hi There") == "b617318655057264e28bc0b6fb378c8ef146be00", "RFC 2202 case 1");
  check(net::hmac_sha1_hex("Jefe", "what do ya want for nothing?") == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", "RFC 2202 case 2");
  check(net::hmac_sha1_hex(std::string(80, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First") ==
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        "RFC 2202 case 6 (a key longer than a block)");
}

// Echoes one message per connection (the stand-in store), until `stop`.
struct Echo {
  net::Listener listener{"127.0.0.1", 0};
  std::atomic<bool> stop{false};
  std::thread thread{[this] {
    while (!stop) {
      pollfd p{listener.fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int c = accept(listener.fd, nullptr, nullptr);
      char buf[256];
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n > 0) send(c, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
      close(c);
    }
  }};
  ~Echo() {
    stop = true;
    thread.join();
  }
};

std::string round_trip(int port, const std::string& message) {
  Fd c = connect_to("127.0.0.1", port);
  if (c.fd < 0 || !write_line(c.fd, message + "\n")) return "(no connection)";
  return read_line(c.fd, std::chrono::milliseconds(5000)).value_or("(no answer)");
}

void gate() {
  Echo store;
  auto front = std::make_unique<net::Listener>("127.0.0.1", 0);
  const int port = front->port;
  net::Gate gate(std::move(front), store.listener.port, "token-1");
  check(net::is_gate("127.0.0.1", port, std::chrono::milliseconds(2000)), "the gate greets as a gate");
  check(!net::is_gate("127.0.0.1", store.listener.port, std::chrono::milliseconds(200)), "a plain store does not");
  {
    net::Relay relay("127.0.0.1", port, "token-1", std::chrono::milliseconds(5000));
    check(round_trip(relay.port(), "hello store") == "hello store", "the right token is relayed both ways");
    check(round_trip(relay.port(), "again") == "again", "every connection through the relay");
  }
  std::string refusal;
  try {
    net::Relay wrong("127.0.0.1", port, "token-2", std::chrono::milliseconds(5000));
  } catch (const densetorch::DistributedError& e) {
    refusal = e.what();
  }
  check(refusal.find("refused this process: the job requires its job token") != std::string::npos, "a wrong token is refused");
  check(refusal.find("token-1") == std::string::npos && refusal.find("token-2") == std::string::npos, "no token in the message");
  std::string none;
  try {
    net::Relay plain("127.0.0.1", store.listener.port, "token-1", std::chrono::milliseconds(5000));
  } catch (const densetorch::DistributedError& e) {
    none = e.what();
  }
  check(none.find("does not ask for a job token") != std::string::npos, "a token offered to a store without a gate");
}

}  // namespace

int main() {
  hmac();
  gate();
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
