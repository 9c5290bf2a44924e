#include "neg.h"
