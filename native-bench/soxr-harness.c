/*
 * libsoxr side of native-bench/resampler.mjs (compiled by it into a cache directory).
 *
 *   soxr-harness MODE IN_RATE OUT_RATE PRECISION_BITS PASSBAND_END INPUT OUTPUT ROUNDS CHUNK
 *
 * INPUT is raw int16 little-endian mono. MODE is
 *   time:     streams INPUT through one resampler per round, CHUNK input samples per soxr_process call
 *             (the gateway hands its resampler about 100 ms at a time), and prints one line of JSON
 *             with the processing time of each round (soxr_create, which designs the filter, is not
 *             timed: the JavaScript side's designs are cached too). Round 0 collects the whole output
 *             into OUTPUT; later rounds write each call's output over the same small buffer, as a
 *             streaming consumer would (and as the JavaScript side accumulates into one 100 ms buffer).
 *   segments: INPUT is a sequence of independent segments of CHUNK samples each (test tones); each
 *             is resampled on its own with soxr_oneshot and the outputs are concatenated into OUTPUT.
 * OUTPUT is raw float32 (native endianness), which keeps quality measurements clear of int16 rounding.
 * Single-threaded (soxr_runtime_spec(1)) so both sides get one core.
 */
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what, const char *detail) {
  fprintf(stderr, "soxr-harness: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static short *read_input(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open input", path);
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  short *data = malloc((size_t)bytes + 2);
  if (!data || fread(data, 1, (size_t)bytes, f) != (size_t)bytes) die("cannot read input", path);
  fclose(f);
  *count = (size_t)bytes / 2;
  return data;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 10) die("usage: soxr-harness time|segments IN_RATE OUT_RATE BITS PASSBAND_END INPUT OUTPUT ROUNDS CHUNK", NULL);
  const char *mode = argv[1];
  double in_rate = atof(argv[2]), out_rate = atof(argv[3]);
  double bits = atof(argv[4]), passband_end = atof(argv[5]);
  int rounds = atoi(argv[8]);
  size_t chunk = (size_t)atol(argv[9]);
  size_t in_count;
  short *input = read_input(argv[6], &in_count);

  soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ | SOXR_LINEAR_PHASE, SOXR_ROLLOFF_SMALL);
  q.precision = bits;
  q.passband_end = passband_end;
  q.stopband_begin = 1;
  soxr_io_spec_t io = soxr_io_spec(SOXR_INT16_I, SOXR_FLOAT32_I);
  soxr_runtime_spec_t rt = soxr_runtime_spec(1);

  size_t out_cap = (size_t)((double)in_count * out_rate / in_rate) + 4096;
  float *output = malloc(out_cap * sizeof(float));
  if (!output) die("out of memory", NULL);
  FILE *out = fopen(argv[7], "wb");
  if (!out) die("cannot open output", argv[7]);

  if (strcmp(mode, "segments") == 0) {
    size_t seg_out = (size_t)((double)chunk * out_rate / in_rate + 0.5);
    for (size_t at = 0; at + chunk <= in_count; at += chunk) {
      size_t odone = 0;
      soxr_error_t e = soxr_oneshot(in_rate, out_rate, 1, input + at, chunk, NULL, output, seg_out, &odone, &io, &q, &rt);
      if (e) die("soxr_oneshot", e);
      if (odone != seg_out) die("soxr_oneshot returned a short segment", NULL);
      fwrite(output, sizeof(float), odone, out);
    }
    fclose(out);
    return 0;
  }
  if (strcmp(mode, "time") != 0) die("unknown mode", mode);

  const char *engine = "";
  size_t total = 0;
  printf("{\"seconds\":[");
  for (int r = 0; r < rounds; r++) {
    soxr_error_t e;
    soxr_t s = soxr_create(in_rate, out_rate, 1, &e, &io, &q, &rt);
    if (!s) die("soxr_create", e);
    engine = soxr_engine(s);
    total = 0;
    double start = now();
    for (size_t at = 0; at < in_count; at += chunk) {
      size_t len = in_count - at < chunk ? in_count - at : chunk, idone = 0, odone = 0;
      float *to = r == 0 ? output + total : output;
      e = soxr_process(s, input + at, len, &idone, to, r == 0 ? out_cap - total : out_cap, &odone);
      if (e) die("soxr_process", e);
      if (idone != len) die("soxr_process left input unconsumed", NULL);
      total += odone;
    }
    for (;;) { /* Flush the filter's tail. */
      size_t odone = 0;
      float *to = r == 0 ? output + total : output;
      e = soxr_process(s, NULL, 0, NULL, to, r == 0 ? out_cap - total : out_cap, &odone);
      if (e) die("soxr_process", e);
      if (odone == 0) break;
      total += odone;
    }
    double elapsed = now() - start;
    soxr_delete(s);
    printf("%s%.9f", r ? "," : "", elapsed);
    if (r == 0) fwrite(output, sizeof(float), total, out);
  }
  printf("],\"outputSamples\":%zu,\"engine\":\"%s\"}\n", total, engine);
  fclose(out);
  return 0;
}
