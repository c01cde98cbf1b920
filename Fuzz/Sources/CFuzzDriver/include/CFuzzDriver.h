// libFuzzer's driver entry (compiler-rt, FuzzerInterface.h). SwiftPM links an executable target's
// `main` to the module's own entry point, so libFuzzer's `main` never runs: main.swift hands
// control to the driver through this function instead.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
