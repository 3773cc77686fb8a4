// The request checks of `gpt serve` that need no HTTP library (docs/serving.md, "Limits and
// hardening"): Host and Origin headers against DNS rebinding and cross-origin posts, and the
// constant-time API key comparison. Fuzzed with the request parser (fuzz/fuzz_openai_request.cpp).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gpt::serve {

// A host and port as a Host header or an origin names them: the host lower-cased, without the
// brackets of an IPv6 address; port -1 when none was given.
struct HostPort {
  std::string host;
  int port = -1;
};

// "127.0.0.1:8080", "localhost", "[::1]:80" -> HostPort; nullopt for anything else (a path, user
// info, whitespace, an unbracketed IPv6 address, a port beyond 65535).
std::optional<HostPort> parse_host(std::string_view value);
// "http://host[:port]" or "https://host[:port]" (a browser's Origin header) -> HostPort with the
// scheme's default port filled in; nullopt for "null", other schemes, paths, anything malformed.
std::optional<HostPort> parse_origin(std::string_view value);

// localhost and its subdomains, 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool is_loopback_host(std::string_view host);

// Whether a request's Host header names this server, for a server bound to a loopback address:
// a loopback name or address, or one of `also` (the --host it was given). A web page that
// rebinds its own name to 127.0.0.1 sends its own name here, so it is refused.
bool loopback_host_allowed(std::string_view host_header, const std::vector<std::string>& also);

// Whether a request's Origin header is the server's own origin: the same host and port as its
// Host header (scheme http or https).
bool same_origin(std::string_view origin, std::string_view host_header);

// Whether an Authorization header is "Bearer KEY" (the scheme case-insensitive). The time taken
// depends on the key's length only, never on where a wrong key differs from it.
bool bearer_matches(std::string_view authorization, std::string_view key);

}  // namespace gpt::serve
