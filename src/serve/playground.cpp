#include "serve/playground.h"

// The bytes of web/playground/* (playground_assets.S.in); each *_end symbol is one past the last.
extern "C" const char gpt_playground_index_html[], gpt_playground_index_html_end[];
extern "C" const char gpt_playground_app_js[], gpt_playground_app_js_end[];
extern "C" const char gpt_playground_style_css[], gpt_playground_style_css_end[];

namespace gpt {

std::optional<std::pair<std::string_view, std::string_view>> playground_asset(std::string_view path) {
  auto bytes = [](const char* b, const char* e) { return std::string_view(b, static_cast<size_t>(e - b)); };
  if (path == "/" || path == "/index.html")
    return std::pair{bytes(gpt_playground_index_html, gpt_playground_index_html_end),
                     "text/html; charset=utf-8"};
  if (path == "/app.js")
    return std::pair{bytes(gpt_playground_app_js, gpt_playground_app_js_end),
                     "text/javascript; charset=utf-8"};
  if (path == "/style.css")
    return std::pair{bytes(gpt_playground_style_css, gpt_playground_style_css_end),
                     "text/css; charset=utf-8"};
  return std::nullopt;
}

}  // namespace gpt
