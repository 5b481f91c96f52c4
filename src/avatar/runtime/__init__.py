"""The torch-free side: run exported models (onnxruntime + tokenizers), find functions (tree-sitter), scan and
report (text, JSON, SARIF). It imports nothing from training: ``tests/test_boundary.py`` checks every module
here, statically, against ``TRAINING_MODULES`` and the training side of Avatar.

Facts about the tasks that both sides need live here, since training may import the runtime but never the
reverse.
"""

TASK_LANGUAGE = {"defect": "c", "clone": "java"}  # the presets' code: Devign is C, BigCloneBench Java (other tasks name theirs)
TASK_DATASET = {"defect": "Devign", "clone": "BigCloneBench"}  # the CodeXGLUE data set each preset's layout and sample come from
COMMAND = {1: "scan", 2: "clones"}  # the avatar command that uses an exported model, by functions per example
# packages only the training install has ([train] extra): the runtime must run without any of them
TRAINING_MODULES = ("torch", "transformers", "sklearn", "safetensors", "z3", "pymoo", "codecarbon", "matplotlib", "onnx",
                    "onnxscript", "onnx_ir")
