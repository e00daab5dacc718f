#include "trace/trace-hw_vmaugment.h"
