/*
 * replay: runs the fuzz target's entry point over files, without libFuzzer,
 * so make check replays the saved corpus (and past crashes) on every build.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        uint8_t *data = NULL;
        size_t len = 0, cap = 0, n;
        do {
            if (len == cap) {
                cap = cap ? cap * 2 : 4096;
                uint8_t *p = realloc(data, cap);
                if (!p) {
                    fprintf(stderr, "replay: out of memory\n");
                    return 1;
                }
                data = p;
            }
            n = fread(data + len, 1, cap - len, f);
            len += n;
        } while (n > 0);
        if (ferror(f)) {
            perror(argv[i]);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(data, len);
        free(data);
    }
    printf("replay: %d inputs, no failure\n", argc - 1);
    return 0;
}
