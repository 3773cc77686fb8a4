# The playground of `gpt serve` and its attention view (included from tests/CMakeLists.txt after
# python_tests.cmake; docs/playground.md).
#   torch_attention  `gpt attention` (serve/attention.h) against the float64 PyTorch reference,
#                    with Debian's python3 and python3-torch.
#   playground       the page end to end in headless Chromium driven by Selenium (venv python):
#                    needs `import selenium`, /usr/bin/chromium and /usr/bin/chromedriver.
# Each is registered only when what it needs is there, with a warning otherwise.

if(gpt_system_torch_rc EQUAL 0)
  add_test(NAME torch_attention
           COMMAND ${GPT_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_attention.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(torch_attention PROPERTIES LABELS torch TIMEOUT 300)
else()
  message(WARNING "${GPT_SYSTEM_PYTHON} cannot import torch and numpy: the torch_attention test is not registered")
endif()

set(gpt_selenium_rc 1)
if(EXISTS ${GPT_VENV_PYTHON})
  execute_process(
    COMMAND ${GPT_VENV_PYTHON} -c "import selenium"
    RESULT_VARIABLE gpt_selenium_rc
    OUTPUT_QUIET ERROR_QUIET)
endif()
if(NOT EXISTS ${CMAKE_SOURCE_DIR}/src/cli/cmd_serve.cpp)
  message(WARNING "no `gpt serve` in this tree (src/cli/cmd_serve.cpp): the playground test is not registered")
elseif(gpt_selenium_rc EQUAL 0 AND EXISTS /usr/bin/chromium AND EXISTS /usr/bin/chromedriver)
  add_test(NAME playground
           COMMAND ${GPT_VENV_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_playground.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(playground PROPERTIES LABELS serve TIMEOUT 300)
else()
  message(WARNING "the playground test needs the venv's selenium (./setup.sh test), /usr/bin/chromium and "
                  "/usr/bin/chromedriver (Debian's chromium, chromium-driver): it is not registered")
endif()
