#include "serve/http_checks.h"

#include <arpa/inet.h>

#include <cstring>

namespace gpt::serve {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

bool is_ipv6_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

// ":digits" or "" -> the port (-1 for none); false when malformed.
bool parse_port(std::string_view s, int& port) {
  port = -1;
  if (s.empty()) return true;
  if (s[0] != ':') return false;
  s.remove_prefix(1);
  if (s.empty()) return true;  // "host:" is a valid Host header: the default port
  if (s.size() > 5) return false;
  int p = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p > 65535) return false;
  port = p;
  return true;
}

}  // namespace

std::optional<HostPort> parse_host(std::string_view v) {
  if (v.empty() || v.size() > 255 + 6) return std::nullopt;
  HostPort hp;
  std::string_view host, rest;
  if (v[0] == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    host = v.substr(1, close - 1);
    rest = v.substr(close + 1);
    for (char c : host)
      if (!is_ipv6_char(c)) return std::nullopt;
  } else {
    const size_t colon = v.find(':');
    host = v.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : v.substr(colon);
    if (host.empty()) return std::nullopt;
    for (char c : host)
      if (!is_name_char(c)) return std::nullopt;
  }
  if (!parse_port(rest, hp.port)) return std::nullopt;
  hp.host.reserve(host.size());
  for (char c : host) hp.host += lower(c);
  return hp;
}

std::optional<HostPort> parse_origin(std::string_view v) {
  int default_port;
  auto starts = [&](std::string_view p) {
    if (v.size() < p.size()) return false;
    for (size_t i = 0; i < p.size(); i++)
      if (lower(v[i]) != p[i]) return false;
    return true;
  };
  if (starts("http://")) {
    default_port = 80;
    v.remove_prefix(7);
  } else if (starts("https://")) {
    default_port = 443;
    v.remove_prefix(8);
  } else {
    return std::nullopt;  // "null" (an opaque origin: a sandboxed page, a file, a redirect) or another scheme
  }
  auto hp = parse_host(v);
  if (hp && hp->port < 0) hp->port = default_port;
  return hp;
}

bool is_loopback_host(std::string_view host) {
  std::string h(host);
  if (!h.empty() && h.back() == '.') h.pop_back();  // the fully qualified "localhost."
  for (char& c : h) c = lower(c);
  if (h == "localhost" || (h.size() > 10 && h.compare(h.size() - 10, 10, ".localhost") == 0)) return true;
  unsigned char a[16];
  if (inet_pton(AF_INET, h.c_str(), a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, h.c_str(), a) == 1) {
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, one, 16) == 0 || (std::memcmp(a, mapped, 12) == 0 && a[12] == 127);
  }
  return false;
}

bool loopback_host_allowed(std::string_view host_header, const std::vector<std::string>& also) {
  const auto hp = parse_host(host_header);
  if (!hp) return false;
  if (is_loopback_host(hp->host)) return true;
  for (const auto& a : also) {
    const auto ap = parse_host(a);
    if (ap && ap->host == hp->host) return true;
    if (!a.empty() && a.front() != '[' && a.find(':') != std::string::npos) {  // an IPv6 --host, unbracketed
      const auto bp = parse_host("[" + a + "]");
      if (bp && bp->host == hp->host) return true;
    }
  }
  return false;
}

bool same_origin(std::string_view origin, std::string_view host_header) {
  const auto o = parse_origin(origin);
  const auto h = parse_host(host_header);
  if (!o || !h) return false;
  if (o->host != h->host) return false;
  // A Host header leaves out the port the scheme implies.
  const int default_port = origin.size() > 5 && lower(origin[4]) == 's' ? 443 : 80;
  return o->port == (h->port < 0 ? default_port : h->port);
}

bool bearer_matches(std::string_view authorization, std::string_view key) {
  static constexpr std::string_view scheme = "bearer ";
  if (authorization.size() < scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); i++)
    if (lower(authorization[i]) != scheme[i]) return false;
  const std::string_view got = authorization.substr(scheme.size());
  // Every byte of the key is compared whatever the input: no early exit on the first difference.
  volatile unsigned char diff = got.size() != key.size();
  for (size_t i = 0; i < key.size(); i++)
    diff = diff | static_cast<unsigned char>((i < got.size() ? got[i] : 0) ^ key[i]);
  return diff == 0;
}

}  // namespace gpt::serve
