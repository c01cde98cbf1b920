// Only a header: the symbol comes from libclang_rt.fuzzer, linked by -sanitize=fuzzer. SwiftPM
// needs one source file to make a C target.
#include "CFuzzDriver.h"
