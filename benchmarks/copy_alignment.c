/* How fast `rep movsb` (the kernel's copy into socket buffers on CPUs with FSRM) copies 32 KiB pieces
 * for each distance (dst - src) mod 4096 from 0 to 63 bytes; docs/architecture.md ("Streamed bodies")
 * explains why /bin cares. On the AMD EPYC (Zen 3) dev host: 21-26 GB/s at 0 and 32..63, ~3 GB/s at 1..31.
 *
 *   gcc -O2 -o /tmp/copy_alignment benchmarks/copy_alignment.c && taskset -c 0 /tmp/copy_alignment
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SRC_SIZE = 1 << 20, DST_SIZE = 8 << 20, PIECE = 32768 - 64, ROUNDS = 4 };

static void rep_movsb(void *dst, const void *src, size_t n) {
    asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

int main(void) {
    char *src = aligned_alloc(4096, SRC_SIZE + 4096), *dst = aligned_alloc(4096, DST_SIZE + 4096);
    memset(src, 'A', SRC_SIZE + 4096);
    memset(dst, 0, DST_SIZE + 4096);
    for (int distance = 0; distance < 64; distance++) {
        struct timespec start, end;
        size_t copied = 0;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (int round = 0; round < ROUNDS; round++)
            for (size_t d = 0, s = 0; d + PIECE + 64 <= DST_SIZE; d += 32768, s = (s + 32768) % SRC_SIZE) {
                rep_movsb(dst + d + distance, src + s, PIECE);
                copied += PIECE;
            }
        clock_gettime(CLOCK_MONOTONIC, &end);
        double seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
        printf("distance %2d: %5.1f GB/s\n", distance, copied / seconds / 1e9);
    }
    return 0;
}
