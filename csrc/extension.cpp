// Makes the compiled ops importable as a Python module (`import linkexit_fast._C`); the ops
// themselves register with the dispatcher from static initialisers in ops/.
#include <Python.h>

#define LINKEXIT_CONCAT(a, b) a##b
#define LINKEXIT_MODULE_INIT(name) LINKEXIT_CONCAT(PyInit_, name)
#define LINKEXIT_STR(name) #name
#define LINKEXIT_NAME(name) LINKEXIT_STR(name)

PyMODINIT_FUNC LINKEXIT_MODULE_INIT(TORCH_EXTENSION_NAME)(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, LINKEXIT_NAME(TORCH_EXTENSION_NAME),
                               "linkexit_fast C++ ops; use them via torch.ops.linkexit_fast",
                               -1, nullptr};
  return PyModule_Create(&module);
}
