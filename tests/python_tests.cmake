# Model conformance tests in Python (included from tests/CMakeLists.txt; docs/conformance.md).
#   torch_conformance  gpt.cpp against the float64 PyTorch reference tools/torch_gpt.py, run with
#                      Debian's python3 and its python3-torch (no venv needed).
#   torch_train_conformance  gpt train's losses step by step against tools/torch_train.py.
#   hf_roundtrip       gpt.cpp against Hugging Face transformers, both directions through model
#                      directories, run with the venv's python (transformers pinned in
#                      requirements-dev.txt; torch comes from Debian through --system-site-packages).
# Each is registered only when its interpreter can run it, with a warning otherwise.

set(GPT_SYSTEM_PYTHON /usr/bin/python3)

execute_process(
  COMMAND ${GPT_SYSTEM_PYTHON} -c "import torch, numpy"
  RESULT_VARIABLE gpt_system_torch_rc
  OUTPUT_QUIET ERROR_QUIET)
if(gpt_system_torch_rc EQUAL 0)
  add_test(NAME torch_conformance
           COMMAND ${GPT_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_conformance.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(torch_conformance PROPERTIES LABELS torch TIMEOUT 900)
  # gpt train's per-step losses against the PyTorch training reference tools/torch_train.py.
  add_test(NAME torch_train_conformance
           COMMAND ${GPT_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_train_conformance.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(torch_train_conformance PROPERTIES LABELS torch TIMEOUT 900)
  # A trained model's peaked distributions: the cross-entropy over 50,257 logits to 1e-6 per token.
  add_test(NAME trained_conformance
           COMMAND ${GPT_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/trained_conformance.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(trained_conformance PROPERTIES LABELS torch TIMEOUT 900)
  # LoRA adapters (gpt logits --adapter, gpt lora merge) against tools/torch_lora.py.
  add_test(NAME torch_lora_conformance
           COMMAND ${GPT_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_lora_conformance.py --gpt $<TARGET_FILE:gpt>)
  set_tests_properties(torch_lora_conformance PROPERTIES LABELS torch TIMEOUT 300)
else()
  message(WARNING "${GPT_SYSTEM_PYTHON} cannot import torch and numpy (Debian packages python3-torch, "
                  "python3-numpy): the torch_conformance test is not registered")
endif()

if(EXISTS ${GPT_VENV_PYTHON})
  execute_process(
    COMMAND ${GPT_VENV_PYTHON} -c "import torch, transformers, safetensors"
    RESULT_VARIABLE gpt_venv_hf_rc
    OUTPUT_QUIET ERROR_QUIET)
  if(gpt_venv_hf_rc EQUAL 0)
    add_test(NAME hf_roundtrip
             COMMAND ${GPT_VENV_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/hf_roundtrip.py --gpt $<TARGET_FILE:gpt>)
    set_tests_properties(hf_roundtrip PROPERTIES LABELS hf TIMEOUT 900)
    # gpt embed against GPT2Model's last_hidden_state, mean- and last-pooled, on a trained model.
    add_test(NAME hf_embeddings
             COMMAND ${GPT_VENV_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/hf_embeddings.py --gpt $<TARGET_FILE:gpt>)
    set_tests_properties(hf_embeddings PROPERTIES LABELS hf TIMEOUT 900)
    # gpt quantize's bf16 and q8 directories, in transformers and recomputed with numpy.
    add_test(NAME hf_quantized
             COMMAND ${GPT_VENV_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/hf_quantized.py --gpt $<TARGET_FILE:gpt>)
    set_tests_properties(hf_quantized PROPERTIES LABELS hf TIMEOUT 300)
    # LoRA adapter files in Hugging Face PEFT and back (peft from requirements-peft.txt, --no-deps).
    execute_process(COMMAND ${GPT_VENV_PYTHON} -c "import peft" RESULT_VARIABLE gpt_venv_peft_rc
                    OUTPUT_QUIET ERROR_QUIET)
    if(gpt_venv_peft_rc EQUAL 0)
      add_test(NAME peft_lora COMMAND ${GPT_VENV_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/peft_lora.py --gpt $<TARGET_FILE:gpt>)
      set_tests_properties(peft_lora PROPERTIES LABELS hf TIMEOUT 300)
    else()
      message(STATUS "no peft in the venv (.venv/bin/pip install --no-deps -r requirements-peft.txt): "
                     "the peft_lora test is not registered")
    endif()
  else()
    message(WARNING "${GPT_VENV_PYTHON} cannot import torch, transformers and safetensors "
                    "(run ./setup.sh test to install requirements-dev.txt): the hf_roundtrip test is not registered")
  endif()
else()
  message(WARNING "no .venv: the hf_roundtrip test is not registered (run ./setup.sh test)")
endif()
