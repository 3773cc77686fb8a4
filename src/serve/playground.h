// The web playground served by `gpt serve` at "/": plain HTML, CSS and JavaScript from
// web/playground/, linked into the binary at build time (no files needed at run time, no build
// step for the page). See docs/playground.md.
#pragma once
#include <optional>
#include <string_view>
#include <utility>

namespace gpt {

// (content, content type) of the asset at an HTTP path: "/" and "/index.html", "/app.js",
// "/style.css"; nullopt for any other path.
std::optional<std::pair<std::string_view, std::string_view>> playground_asset(std::string_view path);

}  // namespace gpt
