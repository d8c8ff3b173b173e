/**
 * Rational polyphase resampling with an equiripple (Parks–McClellan) prototype.
 *
 * Specification (relative to the narrower Nyquist, fN = min(inRate, outRate) / 2):
 *   - passband 0 … 0.85·fN, ripple below 0.1 dB (the design holds ±0.0017 dB, see PASSBAND_DEVIATION);
 *   - stopband fN … outRate·L/2 attenuated by at least 70 dB, so downsampling cannot alias into the
 *     band kept and upsampling leaves no images of the input spectrum;
 *   - the 0.85·fN … fN transition is what lets the filter stay near 58 taps per output sample when
 *     upsampling (58·M/L when downsampling): the cost per call matters more than the last 15% of the
 *     band, and telephone audio has nothing there anyway.
 *
 * The prototype has an odd length, so its group delay is an integer number of samples at the
 * upsampled rate; reading output n at upsampled time n·M + delay makes output n represent timeline
 * time n / outRate exactly, whatever the input rate. Tracks recorded at different rates therefore
 * line up with each other to the sample.
 *
 * 8 kHz → 48 kHz runs as 8 → 16 → 48 kHz (see CASCADE_UP); `taps` is then the exact equivalent single
 * prototype, and the index arithmetic below is unchanged.
 *
 * Designs depend only on (L, M); they are computed once per thread and cached here, never carried in
 * the per-call state. Designing takes a few tens of milliseconds (about 0.1 s for 48 kHz → 8 kHz, the
 * longest), once per worker thread and ratio. How the dot products run (float32, WebAssembly SIMD,
 * bit-identical scalar reference) is described further down, above resampleAccumulate's helpers.
 */

export const RESAMPLER_SPEC = {
  /** Passband edge as a fraction of min(inRate, outRate) / 2. */
  passbandEdgeFraction: 0.85,
  /** Stopband edge as a fraction of min(inRate, outRate) / 2. */
  stopbandEdgeFraction: 1,
  passbandRippleDb: 0.1,
  stopbandAttenuationDb: 70,
} as const;

/**
 * Passband deviation of the equiripple designs (±0.0017 dB): far inside the 0.1 dB ripple allowed, because
 * tracks at different rates go through different filters and must still agree to the sample (a 700 Hz
 * tone from 8, 16, 24 and 48 kHz tracks stays within a few LSB of each other). Lengthens the filter only
 * logarithmically.
 */
const PASSBAND_DEVIATION = 2e-4;
/** Equiripple designs aim this far beyond the attenuation promised (grid and float32 rounding). */
const REMEZ_MARGIN_DB = 1.5;
/**
 * Beyond max(L, M) = 16 (44.1 kHz ↔ 48 kHz: 160/147) the exchange would run over tens of thousands of
 * taps; those ratios keep a Kaiser-windowed sinc. Kaiser's length estimate is a little optimistic at these
 * transition widths; designing a few dB beyond the guaranteed attenuation keeps every measured ratio above it.
 */
const MAX_EQUIRIPPLE_FACTOR = 16;
const KAISER_MARGIN_DB = 4;

/** What a benchmark may ask for beyond RESAMPLER_SPEC (the gateway always uses the defaults). */
export interface ResamplerQuality {
  /** Stopband attenuation to guarantee; RESAMPLER_SPEC's 70 dB by default. */
  stopbandAttenuationDb?: number;
  /** Peak-to-peak passband ripple to stay within; by default that of PASSBAND_DEVIATION (0.0035 dB). */
  passbandRippleDb?: number;
}

/** One rational rate change: what the index arithmetic and the kernels need. */
export interface ResamplerStage {
  up: number;
  down: number;
  taps: Float64Array;
  delay: number;
  tapsPerPhase: number;
  phaseTable: Float32Array;
  kernel: Kernel;
}

export interface ResamplerDesign extends ResamplerStage {
  inRate: number;
  outRate: number;
  /** Upsampling factor L = outRate / gcd. */
  up: number;
  /** Downsampling factor M = inRate / gcd. */
  down: number;
  /** Prototype filter at rate L·inRate, DC gain L (compensates the zeros the upsampler inserts). */
  taps: Float64Array;
  /** Group delay of the prototype, in samples at the upsampled rate. */
  delay: number;
  /** Input samples each output sample reads. */
  tapsPerPhase: number;
  /** Phase p's taps at [p·tapsPerPhase, (p+1)·tapsPerPhase), ordered to match ascending input index. */
  phaseTable: Float32Array;
  /** How the dot products are run (WebAssembly SIMD or the scalar reference; same results). */
  kernel: Kernel;
  passbandEdgeHz: number;
  stopbandEdgeHz: number;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for β < 20). */
function besselI0(x: number): number {
  const halfX = x / 2;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 200; k++) {
    term *= (halfX / k) * (halfX / k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function kaiserBeta(attenuationDb: number): number {
  if (attenuationDb > 50) return 0.1102 * (attenuationDb - 8.7);
  if (attenuationDb >= 21) return 0.5842 * (attenuationDb - 21) ** 0.4 + 0.07886 * (attenuationDb - 21);
  return 0;
}

/** Barycentric weights 1 / Π_{l≠k} 2(x_k − x_l), the product interleaved so that it neither overflows nor underflows. */
function barycentricWeights(x: Float64Array, n: number, out: Float64Array): void {
  const stride = Math.floor((n - 1) / 15) + 1;
  for (let k = 0; k < n; k++) {
    let product = 1;
    for (let j = 0; j < stride; j++) {
      for (let l = j; l < n; l += stride) if (l !== k) product *= 2 * (x[k]! - x[l]!);
    }
    out[k] = 1 / product;
  }
}

/**
 * Parks–McClellan (Remez exchange) design of an odd-length linear-phase lowpass: gain 1 on
 * [0, passEdge], 0 on [stopEdge, 0.5] (cycles per sample), the stopband error weighted `stopWeight`
 * times the passband's at the edge and rising in proportion to frequency beyond, so the passband
 * deviation is δ and the stopband's δ / stopWeight at its edge, less further out.
 * Returns the taps and δ.
 */
function remezLowpass(length: number, passEdge: number, stopEdge: number, stopWeight: number): { taps: Float64Array; deviation: number } {
  const m = (length - 1) / 2;
  const r = m + 2;
  const gridSize = 16 * r;
  const passPoints = Math.max(2, Math.round((gridSize * passEdge) / (passEdge + 0.5 - stopEdge)));
  const stopPoints = Math.max(2, gridSize - passPoints);
  const size = passPoints + stopPoints;
  const gridX = new Float64Array(size);
  const desired = new Float64Array(size);
  const weight = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    const pass = i < passPoints;
    const f = pass ? (passEdge * i) / (passPoints - 1) : stopEdge + ((0.5 - stopEdge) * (i - passPoints)) / (stopPoints - 1);
    gridX[i] = Math.cos(2 * Math.PI * f);
    desired[i] = pass ? 1 : 0;
    // Rising with frequency, like a window design's sidelobes fall: the stopband edge, where
    // only what is near fN lands, gets the attenuation asked for; the images of the audio that matters
    // (far above the edge) are pushed well below it, at next to no cost in length.
    weight[i] = pass ? 1 : (stopWeight * f) / stopEdge;
  }
  let extremal = Int32Array.from({ length: r }, (_, i) => Math.round((i * (size - 1)) / (r - 1)));
  const x = new Float64Array(r);
  const full = new Float64Array(r);
  const values = new Float64Array(r);
  const interpolationWeights = new Float64Array(r);
  const error = new Float64Array(size);
  let delta = 0;
  // The optimal A(cos ω) is the polynomial through the first r − 1 extremal values (barycentric form).
  const response = (at: number): number => {
    let numerator = 0;
    let denominator = 0;
    for (let k = 0; k < r - 1; k++) {
      const t = at - x[k]!;
      if (t === 0) return values[k]!;
      const q = interpolationWeights[k]! / t;
      numerator += q * values[k]!;
      denominator += q;
    }
    return numerator / denominator;
  };
  for (let iteration = 0; iteration < 60; iteration++) {
    for (let k = 0; k < r; k++) x[k] = gridX[extremal[k]!]!;
    barycentricWeights(x, r, full);
    let numerator = 0;
    let denominator = 0;
    for (let k = 0, sign = 1; k < r; k++, sign = -sign) {
      numerator += full[k]! * desired[extremal[k]!]!;
      denominator += (sign * full[k]!) / weight[extremal[k]!]!;
    }
    delta = numerator / denominator;
    for (let k = 0, sign = 1; k < r; k++, sign = -sign) values[k] = desired[extremal[k]!]! - (sign * delta) / weight[extremal[k]!]!;
    barycentricWeights(x, r - 1, interpolationWeights);
    let worst = 0;
    for (let i = 0; i < size; i++) {
      error[i] = weight[i]! * (desired[i]! - response(gridX[i]!));
      worst = Math.max(worst, Math.abs(error[i]!));
    }
    if (worst - Math.abs(delta) <= 1e-4 * worst) break;
    // Next extremal set: the local extrema of the error (band edges included), alternating in sign.
    const next: number[] = [];
    for (let i = 0; i < size; i++) {
      const e = error[i]!;
      const edgeBefore = i === 0 || i === passPoints;
      const edgeAfter = i === size - 1 || i === passPoints - 1;
      const prev = edgeBefore ? null : error[i - 1]!;
      const following = edgeAfter ? null : error[i + 1]!;
      const peak = e > 0 && (prev === null || e >= prev) && (following === null || e > following);
      const trough = e < 0 && (prev === null || e <= prev) && (following === null || e < following);
      if (!peak && !trough) continue;
      const last = next.length - 1;
      if (last >= 0 && Math.sign(error[next[last]!]!) === Math.sign(e)) {
        if (Math.abs(e) > Math.abs(error[next[last]!]!)) next[last] = i;
      } else next.push(i);
    }
    while (next.length > r) {
      if (Math.abs(error[next[0]!]!) < Math.abs(error[next[next.length - 1]!]!)) next.shift();
      else next.pop();
    }
    if (next.length < r) break;
    extremal = Int32Array.from(next);
  }
  // Taps from A sampled at `length` equally spaced frequencies (an inverse DFT of a real, even spectrum).
  const spectrum = Float64Array.from({ length: m + 1 }, (_, k) => response(Math.cos((2 * Math.PI * k) / length)));
  const taps = new Float64Array(length);
  for (let n = 0; n <= m; n++) {
    let sum = spectrum[0]!;
    for (let k = 1; k <= m; k++) sum += 2 * spectrum[k]! * Math.cos((2 * Math.PI * k * (n - m)) / length);
    taps[n] = sum / length;
    taps[length - 1 - n] = sum / length;
  }
  return { taps, deviation: Math.abs(delta) };
}

/**
 * The shortest odd-length equiripple prototype with passband deviation ≤ `passDeviation` and the
 * stopband attenuation asked for plus REMEZ_MARGIN_DB, starting from Kaiser's length estimate for
 * equiripple filters (each trial is one exchange, a few milliseconds to a few tens).
 */
function equirippleLowpass(passEdge: number, stopEdge: number, attenuationDb: number, passDeviation: number): Float64Array {
  const stopDeviation = 10 ** (-(attenuationDb + REMEZ_MARGIN_DB) / 20);
  const stopWeight = passDeviation / stopDeviation;
  // The rising stopband weight costs about 2.5% more taps than Kaiser's formula for flat weights.
  const estimate = 1.025 * ((-10 * Math.log10(passDeviation * stopDeviation) - 13) / (14.6 * (stopEdge - passEdge)) + 1);
  let length = Math.max(3, Math.round(estimate) | 1);
  let best = remezLowpass(length, passEdge, stopEdge, stopWeight);
  if (best.deviation <= passDeviation) {
    for (;;) {
      const shorter = remezLowpass(length - 2, passEdge, stopEdge, stopWeight);
      if (length - 2 < 3 || shorter.deviation > passDeviation) break;
      best = shorter;
      length -= 2;
    }
  } else {
    while (best.deviation > passDeviation) {
      length += 2;
      best = remezLowpass(length, passEdge, stopEdge, stopWeight);
    }
  }
  return best.taps;
}

function kaiserLowpass(passEdge: number, stopEdge: number, attenuationDb: number): Float64Array {
  const designDb = attenuationDb + KAISER_MARGIN_DB;
  const transition = stopEdge - passEdge;
  const cutoff = (stopEdge + passEdge) / 2;
  let length = Math.ceil((designDb - 7.95) / (14.357 * transition)) + 1;
  if (length % 2 === 0) length += 1;
  const beta = kaiserBeta(designDb);
  const centre = (length - 1) / 2;
  const windowNorm = besselI0(beta);
  const taps = new Float64Array(length);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const x = i - centre;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const r = x / centre;
    const window = besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / windowNorm;
    taps[i] = sinc * window;
    sum += taps[i]!;
  }
  for (let i = 0; i < length; i++) taps[i] = taps[i]! / sum;
  return taps;
}

/** The prototype at rate L·inRate, DC gain L. */
function designPrototype(up: number, down: number, attenuationDb: number, passDeviation: number): Float64Array {
  if (up === 1 && down === 1) return Float64Array.of(1);
  // Frequencies in cycles per sample at the upsampled rate; the narrower Nyquist is 1 / (2·max(L, M)).
  const nyquist = 1 / (2 * Math.max(up, down));
  const passEdge = RESAMPLER_SPEC.passbandEdgeFraction * nyquist;
  const stopEdge = RESAMPLER_SPEC.stopbandEdgeFraction * nyquist;
  return designLowpass(up, down, passEdge, stopEdge, attenuationDb, passDeviation);
}

function designLowpass(up: number, down: number, passEdge: number, stopEdge: number, attenuationDb: number, passDeviation: number): Float64Array {
  const lowpass =
    Math.max(up, down) <= MAX_EQUIRIPPLE_FACTOR
      ? equirippleLowpass(passEdge, stopEdge, attenuationDb, passDeviation)
      : // A Kaiser design's passband deviation equals its stopband's (designed KAISER_MARGIN_DB beyond the promise).
        kaiserLowpass(passEdge, stopEdge, Math.max(attenuationDb, -20 * Math.log10(passDeviation) - KAISER_MARGIN_DB));
  return lowpass.map((tap) => tap * up);
}

interface Polyphase {
  taps: Float64Array;
  tapsPerPhase: number;
  phaseTable: Float32Array;
  kernel: Kernel;
}

const polyphaseByRatio = new Map<string, Polyphase>();
const designsByRates = new Map<string, ResamplerDesign>();

/** Phase p's taps, ordered to match ascending input index (zero where a phase is shorter). */
function phaseTableOf(taps: Float64Array, up: number, tapsPerPhase: number): Float32Array {
  const phaseTable = new Float32Array(up * tapsPerPhase);
  for (let phase = 0; phase < up; phase++) {
    for (let k = 0; k < tapsPerPhase; k++) {
      const tapIndex = phase + k * up;
      phaseTable[phase * tapsPerPhase + (tapsPerPhase - 1 - k)] = tapIndex < taps.length ? taps[tapIndex]! : 0;
    }
  }
  return phaseTable;
}

function stageOf(up: number, down: number, taps: Float64Array): ResamplerStage {
  const tapsPerPhase = Math.ceil(taps.length / up);
  const phaseTable = phaseTableOf(taps, up, tapsPerPhase);
  return { up, down, taps, delay: (taps.length - 1) / 2, tapsPerPhase, phaseTable, kernel: createKernel(up, down, tapsPerPhase, phaseTable) };
}

/**
 * Upsampling by 2·K (8 kHz → 48 kHz: K = 3) runs as two stages: ×2 with the sharp filter (the same
 * design as 8 kHz → 16 kHz, 58 taps per output), then ×K with a short one that only has to remove the
 * images of that band, which the first stage has already cleared up to 1.5·fs_in (pass 0.85·fN, stop
 * from 2·fs_in − fN: a wide transition, about 10 taps per output). About half the arithmetic of the
 * single 6× prototype. The first stage keeps the whole passband deviation allowed and the second a
 * tenth of it; the stopband is the first stage's up to 1.5·fs_in and the second's beyond.
 */
const CASCADE_UP: readonly number[] = [4, 6];

function polyphaseFor(up: number, down: number, attenuationDb: number, passDeviation: number): Polyphase {
  const key = `${up}/${down}/${attenuationDb}/${passDeviation}`;
  const cached = polyphaseByRatio.get(key);
  if (cached) return cached;
  let polyphase: Polyphase;
  if (down === 1 && CASCADE_UP.includes(up)) {
    polyphase = cascadeFor(up, attenuationDb, passDeviation);
  } else {
    // The arithmetic is single precision (see resampleAccumulate); `taps` holds exactly the values used.
    const { taps, tapsPerPhase, phaseTable, kernel } = stageOf(up, down, designPrototype(up, down, attenuationDb, passDeviation).map(Math.fround));
    polyphase = { taps, tapsPerPhase, phaseTable, kernel };
  }
  polyphaseByRatio.set(key, polyphase);
  return polyphase;
}

function cascadeFor(up: number, attenuationDb: number, passDeviation: number): Polyphase {
  const rest = up / 2;
  const doubling = polyphaseFor(2, 1, attenuationDb, passDeviation);
  const first: ResamplerStage = { up: 2, down: 1, delay: (doubling.taps.length - 1) / 2, ...doubling };
  // In cycles per sample at the final rate, where the input rate is 1 / up.
  const passEdge = (RESAMPLER_SPEC.passbandEdgeFraction * 0.5) / up;
  const stopEdge = (2 - 0.5) / up;
  const second = stageOf(rest, 1, designLowpass(rest, 1, passEdge, stopEdge, attenuationDb, passDeviation / 10).map(Math.fround));
  // The equivalent single prototype: the first stage's taps spread `rest` apart, convolved with the second's.
  const taps = new Float64Array(rest * (first.taps.length - 1) + second.taps.length);
  for (let i = 0; i < first.taps.length; i++) {
    for (let j = 0; j < second.taps.length; j++) taps[rest * i + j]! += first.taps[i]! * second.taps[j]!;
  }
  const delay = (taps.length - 1) / 2;
  // Input an output reads through both stages: its span is periodic in the output index with period up.
  let tapsPerPhase = 0;
  for (let n = 0; n < up; n++) {
    const last = lastInputFor(first, lastInputFor(second, n));
    const lowest = firstInputFor(first, firstInputFor(second, n));
    tapsPerPhase = Math.max(tapsPerPhase, last - lowest + 1);
  }
  const kernel: Kernel = { kind: 'cascade', residues: 1, groups: [], stages: [first, second] };
  return { taps, tapsPerPhase, phaseTable: phaseTableOf(taps, up, tapsPerPhase), kernel };
}

export function designResampler(inRate: number, outRate: number, quality?: ResamplerQuality): ResamplerDesign {
  const attenuationDb = quality?.stopbandAttenuationDb ?? RESAMPLER_SPEC.stopbandAttenuationDb;
  const ripple = quality?.passbandRippleDb === undefined ? null : 10 ** (quality.passbandRippleDb / 20);
  // Peak-to-peak ripple r dB allows gains within 1 ± δ with (1 + δ) / (1 − δ) = 10^(r/20).
  const passDeviation = ripple === null ? PASSBAND_DEVIATION : (ripple - 1) / (ripple + 1);
  const key = `${inRate}/${outRate}/${attenuationDb}/${passDeviation}`;
  const cached = designsByRates.get(key);
  if (cached) return cached;
  const divisor = gcd(inRate, outRate);
  const up = outRate / divisor;
  const down = inRate / divisor;
  const { taps, tapsPerPhase, phaseTable, kernel } = polyphaseFor(up, down, attenuationDb, passDeviation);
  const nyquistHz = Math.min(inRate, outRate) / 2;
  const design: ResamplerDesign = {
    inRate,
    outRate,
    up,
    down,
    taps,
    delay: (taps.length - 1) / 2,
    tapsPerPhase,
    phaseTable,
    kernel,
    passbandEdgeHz: nyquistHz * RESAMPLER_SPEC.passbandEdgeFraction,
    stopbandEdgeHz: nyquistHz * RESAMPLER_SPEC.stopbandEdgeFraction,
  };
  designsByRates.set(key, design);
  return design;
}

/** Highest input index output n reads. */
export function lastInputFor(design: ResamplerStage, outputIndex: number): number {
  return Math.floor((outputIndex * design.down + design.delay) / design.up);
}

/** Lowest input index output n reads (negative indices are the silence before the call). */
export function firstInputFor(design: ResamplerStage, outputIndex: number): number {
  return lastInputFor(design, outputIndex) - design.tapsPerPhase + 1;
}

/** How many outputs (from index 0) can be computed once input [0, inputEnd) is known. */
export function outputsComputable(design: ResamplerStage, inputEnd: number): number {
  // Output n is computable while n·M + delay < inputEnd·L.
  const limit = inputEnd * design.up - 1 - design.delay;
  if (limit < 0) return 0;
  return Math.floor(limit / design.down) + 1;
}


/*
 * The arithmetic. Output n is a dot product of its phase's taps with the input it reads, in single
 * precision, in an order fixed by its phase alone:
 *
 *   - the taps are visited in groups, group r holding the taps whose index k ≡ r (mod R), k ascending
 *     (R = M where the SIMD kernel takes M, see createKernel; else 1);
 *   - a phase whose taps are symmetric (every phase when L ≤ 2, and when downsampling by an integer, since
 *     the prototype is; some of the others) is folded: only the first half is visited, and tap k
 *     multiplies x[k] + x[T′ − 1 − k] (T′ the phase's length without the zeros that pad it; the middle
 *     tap of an odd T′ is halved and multiplies 2·x[k], the same product);
 *   - every pair sum, product and partial sum is rounded to float32 (a pair of int16 samples sums
 *     exactly), and the float32 result is added to the float64 accumulator;
 *   - a cascade (8 kHz → 48 kHz, see CASCADE_UP) does that twice: its first stage's outputs, float32,
 *     are the second stage's input samples.
 *
 * So the result is a property of the output index alone: batching cannot change a single bit.
 *
 * Two implementations compute exactly that. The fast one is WebAssembly SIMD: the outputs that share a
 * phase (n, n + L, n + 2L, …) read input starting M apart, so once the input is split into M streams
 * (x[S + q + jM] for q < M) each group is a plain (or folded) FIR over contiguous float32 memory, run
 * 4·ACCUMULATORS outputs at a time, one output per lane. WebAssembly's float arithmetic is IEEE single
 * precision with no fused multiply-add, so each lane performs exactly the scalar sequence. The scalar
 * reference (JavaScript, Math.fround after every operation; rounding float32 products and sums through
 * binary64 first is exact) serves ratios with a large M (44.1 kHz → 48 kHz: M = 147), which would leave
 * the SIMD kernel a tap or two per group, and any host without WebAssembly SIMD.
 */

/** The SIMD kernel takes M up to this, while each group keeps at least 16 taps. */
const MAX_SIMD_DOWN = 16;
/** f32x4 accumulators per kernel block; a block computes 4·ACCUMULATORS outputs. */
const ACCUMULATORS = 4;
const LANES_PER_BLOCK = 4 * ACCUMULATORS;
/** Outputs per kernel pass; bounds the scratch memory whatever the batch size. */
const PIECE_OUTPUTS = 4096;

/** One group of one phase's taps. */
export interface TapGroup {
  /** Tap i multiplies x[base + first + i·R] (plus x[base + partner − i·R] when folded). */
  first: number;
  partner: number;
  folded: boolean;
  coefficients: Float32Array;
  /** SIMD only: byte offset of `coefficients` in the kernel's memory. */
  offset: number;
}

export interface Kernel {
  kind: 'identity' | 'simd' | 'scalar' | 'cascade';
  /** R: the stride between the taps of a group. */
  residues: number;
  /** Per phase, its groups in summation order. */
  groups: TapGroup[][];
  /** Cascade only: ×2, then ×L/2; the first stage's outputs are float32 and are the second's input. */
  stages?: [ResamplerStage, ResamplerStage];
}

function leb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function section(id: number, content: number[]): number[] {
  return [id, ...leb(content.length), ...content];
}

function name(text: string): number[] {
  return [text.length, ...Array.from(text, (c) => c.charCodeAt(0))];
}

const I32 = 0x7f;
const V128 = 0x7b;
const get = (i: number): number[] => [0x20, i];
const set = (i: number): number[] => [0x21, i];
const tee = (i: number): number[] => [0x22, i];
const i32 = (n: number): number[] => [0x41, ...sleb(n)];
const add32 = 0x6a;
const sub32 = 0x6b;
const memarg = (alignLog2: number, offset = 0): number[] => [alignLog2, ...leb(offset)];
const simdOp = (op: number, ...immediates: number[]): number[] => [0xfd, ...leb(op), ...immediates];

/**
 *   fir(u, v, h, taps, y, blocks, accumulate)          (byte addresses; taps ≥ 1, blocks ≥ 1)
 *     repeat blocks times:
 *       a[w] = accumulate ? y[w] : 0                                      (w < ACCUMULATORS, f32x4 each)
 *       for i < taps: a[w] = a[w] + splat(h[i]) · u[i + w]                 (plain)
 *                 or: a[w] = a[w] + splat(h[i]) · (u[i + w] + v[w − i])   (folded)
 *       y[w] = a[w]; u, v, y advance by one block
 *   with u, v, y indexed in f32x4 steps of w and float32 steps of i: y[j] (+)= Σ_i h[i]·x_u[i + j]
 *   (or h[i]·(x_u[i + j] + x_v[j − i])) in float32, i ascending, for 4·ACCUMULATORS·blocks outputs j.
 */
function firBody(folded: boolean): number[] {
  const [U, V, H, TAPS, Y, BLOCKS, ACC] = [0, 1, 2, 3, 4, 5, 6];
  const A = (w: number): number => 7 + w;
  const C = 7 + ACCUMULATORS;
  const HP = C + 1;
  const UP = C + 2;
  const VP = C + 3;
  const HEND = C + 4;
  const load = (offset: number): number[] => simdOp(0x00, ...memarg(0, offset)); // v128.load
  const store = (offset: number): number[] => simdOp(0x0b, ...memarg(0, offset)); // v128.store
  const splat32 = simdOp(0x09, ...memarg(2)); // v128.load32_splat
  const zero = simdOp(0x0c, ...new Array<number>(16).fill(0)); // v128.const 0
  const mul = simdOp(0xe6); // f32x4.mul
  const add = simdOp(0xe4); // f32x4.add
  const each = (f: (w: number) => number[]): number[] => Array.from({ length: ACCUMULATORS }, (_, w) => f(w)).flat();
  const operand = (w: number): number[] => (folded ? [...get(UP), ...load(16 * w), ...get(VP), ...load(16 * w), ...add] : [...get(UP), ...load(16 * w)]);
  const block = 16 * ACCUMULATORS;
  return [
    2, ACCUMULATORS + 1, V128, 4, I32, // locals: a[…], c; hp, up, vp, hend
    ...get(H), ...get(TAPS), ...i32(2), 0x74, add32, ...set(HEND), // hend = h + 4·taps
    0x03, 0x40, // loop (blocks)
    ...get(ACC), 0x04, 0x40, // if accumulate
    ...each((w) => [...get(Y), ...load(16 * w), ...set(A(w))]),
    0x05, // else
    ...each((w) => [...zero, ...set(A(w))]),
    0x0b,
    ...get(H), ...set(HP),
    ...get(U), ...set(UP),
    ...get(V), ...set(VP),
    0x03, 0x40, // loop (taps)
    ...get(HP), ...splat32, ...set(C),
    ...each((w) => [...get(A(w)), ...get(C), ...operand(w), ...mul, ...add, ...set(A(w))]),
    ...get(UP), ...i32(4), add32, ...set(UP),
    ...(folded ? [...get(VP), ...i32(4), sub32, ...set(VP)] : []),
    ...get(HP), ...i32(4), add32, ...tee(HP),
    ...get(HEND), 0x49, 0x0d, 0, // br_if taps while hp < hend (unsigned)
    0x0b,
    ...each((w) => [...get(Y), ...get(A(w)), ...store(16 * w)]),
    ...get(Y), ...i32(block), add32, ...set(Y),
    ...get(U), ...i32(block), add32, ...set(U),
    ...get(V), ...i32(block), add32, ...set(V),
    ...get(BLOCKS), ...i32(1), sub32, ...tee(BLOCKS),
    0x0d, 0, // br_if blocks while blocks ≠ 0
    0x0b,
    0x0b,
  ];
}

/**
 *   widen(src, step, count, dst)   (count ≥ 1)
 *     for j < count: f32[dst + 4j] = i16[src + j·step]
 *   one input stream: int16 samples `step` bytes apart, to contiguous float32.
 */
function widenBody(): number[] {
  const [SRC, STEP, COUNT, DST] = [0, 1, 2, 3];
  return [
    0, // no locals
    0x03, 0x40,
    ...get(DST), ...get(SRC), 0x2e, ...memarg(1), 0xb2, 0x38, ...memarg(2), // f32.store(dst, f32.convert_i32_s(i32.load16_s(src)))
    ...get(SRC), ...get(STEP), add32, ...set(SRC),
    ...get(DST), ...i32(4), add32, ...set(DST),
    ...get(COUNT), ...i32(1), sub32, ...tee(COUNT),
    0x0d, 0,
    0x0b,
    0x0b,
  ];
}

/**
 *   widen8(src, groups, dst)   (groups ≥ 1)
 *     for j < 8·groups: f32[dst + 4j] = i16[src + 2j]
 *   the single stream of M = 1, eight samples per step (it may read up to 7 samples past the end).
 */
function widen8Body(): number[] {
  const [SRC, GROUPS, DST, V] = [0, 1, 2, 3];
  return [
    1, 1, V128,
    0x03, 0x40,
    ...get(SRC), ...simdOp(0x00, ...memarg(0)), ...set(V),
    ...get(DST), ...get(V), ...simdOp(0xa7), ...simdOp(0xfa), ...simdOp(0x0b, ...memarg(0, 0)), // i32x4.extend_low_i16x8_s, f32x4.convert_i32x4_s
    ...get(DST), ...get(V), ...simdOp(0xa8), ...simdOp(0xfa), ...simdOp(0x0b, ...memarg(0, 16)), // i32x4.extend_high_i16x8_s
    ...get(SRC), ...i32(16), add32, ...set(SRC),
    ...get(DST), ...i32(32), add32, ...set(DST),
    ...get(GROUPS), ...i32(1), sub32, ...tee(GROUPS),
    0x0d, 0,
    0x0b,
    0x0b,
  ];
}

/**
 *   zero(dst, count)   (count ≥ 1)
 *     for j < count: f32[dst + 4j] = 0
 *   the padding after a stream, which the lanes past the last output read (their results are dropped).
 */
function zeroBody(): number[] {
  const [DST, COUNT] = [0, 1];
  return [
    0,
    0x03, 0x40,
    ...get(DST), 0x43, 0, 0, 0, 0, 0x38, ...memarg(2), // f32.store(dst, 0)
    ...get(DST), ...i32(4), add32, ...set(DST),
    ...get(COUNT), ...i32(1), sub32, ...tee(COUNT),
    0x0d, 0,
    0x0b,
    0x0b,
  ];
}

/**
 *   scatter(y, acc, count, stride)   (count ≥ 1)
 *     for j < count: f64[acc + j·stride] += f32[y + 4j]
 *   the float32 outputs of one phase class added into the float64 mix, L outputs apart.
 */
function scatterBody(): number[] {
  const [Y, ACC, COUNT, STRIDE] = [0, 1, 2, 3];
  return [
    0,
    0x03, 0x40,
    ...get(ACC), ...get(ACC), 0x2b, ...memarg(3), ...get(Y), 0x2a, ...memarg(2), 0xbb, 0xa0, 0x39, ...memarg(3), // f64.store(acc, f64.load(acc) + f64.promote_f32(f32.load(y)))
    ...get(ACC), ...get(STRIDE), add32, ...set(ACC),
    ...get(Y), ...i32(4), add32, ...set(Y),
    ...get(COUNT), ...i32(1), sub32, ...tee(COUNT),
    0x0d, 0,
    0x0b,
    0x0b,
  ];
}

/**
 *   store(y, dst, count, stride)   (count ≥ 1)
 *     for j < count: f32[dst + j·stride] = f32[y + 4j]
 *   a cascade's first stage: one phase class of the intermediate signal, L samples apart.
 */
function storeBody(): number[] {
  const [Y, DST, COUNT, STRIDE] = [0, 1, 2, 3];
  return [
    0,
    0x03, 0x40,
    ...get(DST), ...get(Y), 0x2a, ...memarg(2), 0x38, ...memarg(2), // f32.store(dst, f32.load(y))
    ...get(DST), ...get(STRIDE), add32, ...set(DST),
    ...get(Y), ...i32(4), add32, ...set(Y),
    ...get(COUNT), ...i32(1), sub32, ...tee(COUNT),
    0x0d, 0,
    0x0b,
    0x0b,
  ];
}

/** The kernels' WebAssembly module, assembled here rather than shipped as a binary. */
function kernelModule(): Uint8Array {
  const code = (body: number[]): number[] => [...leb(body.length), ...body];
  const exports: Array<[string, number, number]> = [
    ['fir', 0, 0],
    ['firFolded', 0, 1],
    ['widen', 0, 2],
    ['scatter', 0, 3],
    ['widen8', 0, 4],
    ['zero', 0, 5],
    ['store', 0, 6],
    ['memory', 2, 0],
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [4, 0x60, 7, I32, I32, I32, I32, I32, I32, I32, 0, 0x60, 4, I32, I32, I32, I32, 0, 0x60, 3, I32, I32, I32, 0, 0x60, 2, I32, I32, 0]),
    ...section(3, [7, 0, 0, 1, 1, 2, 3, 1]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [exports.length, ...exports.flatMap(([n, kind, index]) => [...name(n), kind, index])]),
    ...section(10, [7, ...[firBody(false), firBody(true), widenBody(), scatterBody(), widen8Body(), zeroBody(), storeBody()].flatMap(code)]),
  ]);
}

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
type Fir = (u: number, v: number, h: number, taps: number, y: number, blocks: number, accumulate: number) => void;
type Widen = (src: number, step: number, count: number, dst: number) => void;
type Scatter = (y: number, accumulator: number, count: number, stride: number) => void;
type Widen8 = (src: number, groups: number, dst: number) => void;
type Zero = (dst: number, count: number) => void;

interface Simd {
  fir: Fir;
  firFolded: Fir;
  widen: Widen;
  widen8: Widen8;
  zero: Zero;
  scatter: Scatter;
  store: Scatter;
  memory: WasmMemory;
  heap: Float32Array;
  heap16: Int16Array;
  heap64: Float64Array;
  /** Bytes in use by coefficient tables; scratch lives above. */
  tablesEnd: number;
}

function views(memory: WasmMemory): Pick<Simd, 'heap' | 'heap16' | 'heap64'> {
  return { heap: new Float32Array(memory.buffer), heap16: new Int16Array(memory.buffer), heap64: new Float64Array(memory.buffer) };
}

function loadSimd(): Simd | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  const bytes = kernelModule();
  if (api === undefined || !api.validate(bytes)) return null;
  const { exports } = new api.Instance(new api.Module(bytes), {});
  const memory = exports['memory'] as WasmMemory;
  return {
    fir: exports['fir'] as Fir,
    firFolded: exports['firFolded'] as Fir,
    widen: exports['widen'] as Widen,
    widen8: exports['widen8'] as Widen8,
    zero: exports['zero'] as Zero,
    store: exports['store'] as Scatter,
    scatter: exports['scatter'] as Scatter,
    memory,
    ...views(memory),
    tablesEnd: 0,
  };
}

const simd = loadSimd();

/** Makes the kernel memory at least `bytes` long. */
function reserve(state: Simd, bytes: number): void {
  const have = state.memory.buffer.byteLength;
  if (have >= bytes) return;
  state.memory.grow(Math.ceil((bytes - have) / 65536));
  Object.assign(state, views(state.memory));
}

const align16 = (bytes: number): number => (bytes + 15) & ~15;

/** Phase p's groups: see the summation order above. */
function phaseGroups(row: Float32Array, residues: number): TapGroup[] {
  let lead = 0;
  while (lead < row.length - 1 && row[lead] === 0) lead++;
  const length = row.length - lead;
  let symmetric = length > 1;
  for (let k = 0; symmetric && k < length >> 1; k++) symmetric = row[lead + k] === row[row.length - 1 - k];
  const groups: TapGroup[] = [];
  for (let r = 0; r < residues; r++) {
    const taps: number[] = [];
    if (symmetric) {
      for (let k = r; 2 * k <= length - 1; k += residues) taps.push(2 * k === length - 1 ? row[lead + k]! / 2 : row[lead + k]!);
    } else {
      for (let k = r; k < row.length; k += residues) taps.push(row[k]!);
    }
    if (taps.length === 0) continue;
    const first = symmetric ? lead + r : r;
    groups.push({ first, partner: symmetric ? row.length - 1 - r : first, folded: symmetric, coefficients: Float32Array.from(taps), offset: -1 });
  }
  return groups;
}

function createKernel(up: number, down: number, tapsPerPhase: number, phaseTable: Float32Array): Kernel {
  if (up === 1 && down === 1) return { kind: 'identity', residues: 1, groups: [] };
  const residues = down <= MAX_SIMD_DOWN && tapsPerPhase >= 16 * down ? down : 1;
  const groups = Array.from({ length: up }, (_, p) => phaseGroups(phaseTable.subarray(p * tapsPerPhase, (p + 1) * tapsPerPhase), residues));
  if (simd === null || residues !== down) return { kind: 'scalar', residues, groups };
  let at = align16(simd.tablesEnd);
  reserve(simd, at + 4 * phaseTable.length + 16 * up * residues);
  for (const group of groups.flat()) {
    group.offset = at;
    simd.heap.set(group.coefficients, at >> 2);
    at += 4 * group.coefficients.length;
  }
  simd.tablesEnd = at;
  return { kind: 'simd', residues, groups };
}

/**
 * Adds outputs [firstOutput, firstOutput + count) into `accumulator` (which the caller mixes several
 * tracks into). `input[0]` is timeline index `inputStart`; it must cover every index those outputs
 * read. The summation order is fixed per output (see above), so the result does not depend on how
 * the call was batched, nor on which of the two implementations ran.
 */
export function resampleAccumulate(
  design: ResamplerStage,
  input: Int16Array,
  inputStart: number,
  firstOutput: number,
  count: number,
  accumulator: Float64Array,
): void {
  if (count <= 0) return;
  const { kernel } = design;
  const stagesOnSimd = kernel.kind === 'cascade' && kernel.stages!.every((stage) => stage.kernel.kind === 'simd');
  if (simd !== null && (kernel.kind === 'simd' || stagesOnSimd)) {
    for (let done = 0; done < count; done += PIECE_OUTPUTS) {
      simdPiece(simd, design, input, inputStart, firstOutput + done, Math.min(PIECE_OUTPUTS, count - done), accumulator, done);
    }
  } else {
    resampleAccumulateScalar(design, input, inputStart, firstOutput, count, accumulator);
  }
}

/** Scratch layout of one stage's input streams: their stride and, by timeline index, where a sample lives. */
interface Streams {
  at: number;
  length: number;
  /** Timeline index of stream 0's first sample. */
  start: number;
}

/** A stage's M float32 streams (with the zeroed padding the spare lanes read) from int16 input, at `at`. */
function widenInput(state: Simd, stage: ResamplerStage, input: Int16Array, inputStart: number, start: number, span: number, rawAt: number, at: number): Streams {
  const { down } = stage;
  const length = streamLength(span, down);
  state.heap16.set(input.subarray(start - inputStart, start - inputStart + span), rawAt >> 1);
  for (let q = 0; q < down; q++) {
    const count = Math.ceil((span - q) / down);
    const streamAt = at + 4 * q * length;
    if (down === 1) state.widen8(rawAt, Math.ceil(count / 8), streamAt);
    else state.widen(rawAt + 2 * q, 2 * down, count, streamAt);
    state.zero(streamAt + 4 * count, length - count);
  }
  return { at, length, start };
}

/** A class's padding lanes (to the end of its last block) read up to LANES_PER_BLOCK past the real ones; widen8 overshoots by 7. */
const streamLength = (span: number, down: number): number => Math.ceil(span / down) + LANES_PER_BLOCK + 8;

/**
 * Outputs [first, first + count) of one stage, from its streams, phase class by phase class through
 * `y` (float32 scratch); each class then goes to `target`: added into the float64 mix there, or stored
 * as float32 (a cascade's intermediate signal), L outputs apart either way.
 */
function runStage(state: Simd, stage: ResamplerStage, streams: Streams, first: number, count: number, y: number, target: { mix: boolean; at: number }): void {
  const { up, down, tapsPerPhase, delay } = stage;
  const { fir, firFolded, scatter, store } = state;
  const address = (index: number): number => {
    const q = index % down;
    return streams.at + 4 * (q * streams.length + (index - q) / down);
  };
  const classes = Math.min(up, count);
  for (let c = 0; c < classes; c++) {
    const time = (first + c) * down + delay;
    const last = Math.floor(time / up);
    const phase = time - last * up;
    const base = last - tapsPerPhase + 1 - streams.start;
    const lanes = Math.floor((count - 1 - c) / up) + 1;
    const blocks = Math.ceil(lanes / LANES_PER_BLOCK);
    const groups = stage.kernel.groups[phase]!;
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]!;
      const kernel = group.folded ? firFolded : fir;
      kernel(address(base + group.first), address(base + group.partner), group.offset, group.coefficients.length, y, blocks, g);
    }
    if (target.mix) scatter(y, target.at + 8 * c, lanes, 8 * up);
    else store(y, target.at + 4 * c, lanes, 4 * up);
  }
}

function simdPiece(
  state: Simd,
  design: ResamplerStage,
  input: Int16Array,
  inputStart: number,
  first: number,
  count: number,
  accumulator: Float64Array,
  accumulatorOffset: number,
): void {
  const stages = design.kernel.stages ?? [design];
  const head = stages[0]!;
  // The first stage's outputs: this piece's, or, in a cascade, the intermediate samples the second stage reads.
  const tail = stages[stages.length - 1]!;
  const headFirst = stages.length === 1 ? first : firstInputFor(tail, first);
  const headCount = stages.length === 1 ? count : lastInputFor(tail, first + count - 1) - headFirst + 1;
  const start = firstInputFor(head, headFirst);
  const span = lastInputFor(head, headFirst + headCount - 1) - start + 1;
  // Scratch: the mix (float64), the raw input (int16), its streams (float32), the intermediate stream, a class's outputs.
  const mixAt = align16(state.tablesEnd);
  const rawAt = align16(mixAt + 8 * count);
  const streamsAt = align16(rawAt + 2 * span + 16);
  const middleAt = align16(streamsAt + 4 * head.down * streamLength(span, head.down));
  const middleLength = stages.length === 1 ? 0 : streamLength(headCount, 1);
  const outAt = align16(middleAt + 4 * middleLength);
  const lanesMax = Math.max(...stages.map((stage, i) => Math.ceil((i === 0 ? headCount : count) / stage.up)));
  reserve(state, outAt + 4 * LANES_PER_BLOCK * (Math.ceil(lanesMax / LANES_PER_BLOCK) + 1));
  state.heap64.set(accumulator.subarray(accumulatorOffset, accumulatorOffset + count), mixAt >> 3);
  const streams = widenInput(state, head, input, inputStart, start, span, rawAt, streamsAt);
  if (stages.length === 1) {
    runStage(state, head, streams, first, count, outAt, { mix: true, at: mixAt });
  } else {
    runStage(state, head, streams, headFirst, headCount, outAt, { mix: false, at: middleAt });
    state.zero(middleAt + 4 * headCount, middleLength - headCount);
    runStage(state, tail, { at: middleAt, length: middleLength, start: headFirst }, first, count, outAt, { mix: true, at: mixAt });
  }
  accumulator.set(state.heap64.subarray(mixAt >> 3, (mixAt >> 3) + count), accumulatorOffset);
}

/** The reference arithmetic, one output at a time (used where the SIMD kernel is not). */
export function resampleAccumulateScalar(
  design: ResamplerStage,
  input: ArrayLike<number>,
  inputStart: number,
  firstOutput: number,
  count: number,
  accumulator: Float64Array,
): void {
  const { up, down, tapsPerPhase } = design;
  const { kind, residues, groups, stages } = design.kernel;
  if (kind === 'cascade') {
    const [head, tail] = stages!;
    // The intermediate signal, float32 values (an accumulator starting at zero adds them exactly).
    const middleFirst = firstInputFor(tail, firstOutput);
    const middle = new Float64Array(lastInputFor(tail, firstOutput + count - 1) - middleFirst + 1);
    resampleAccumulateScalar(head, input, inputStart, middleFirst, middle.length, middle);
    resampleAccumulateScalar(tail, middle, middleFirst, firstOutput, count, accumulator);
    return;
  }
  if (kind === 'identity') {
    const offset = firstOutput - inputStart;
    for (let n = 0; n < count; n++) accumulator[n]! += input[offset + n]!;
    return;
  }
  const fround = Math.fround;
  const time = firstOutput * down + design.delay;
  let lastInput = Math.floor(time / up);
  let phase = time - lastInput * up;
  for (let n = 0; n < count; n++) {
    const base = lastInput - tapsPerPhase + 1 - inputStart;
    let sum = 0;
    for (const group of groups[phase]!) {
      const h = group.coefficients;
      let u = base + group.first;
      if (group.folded) {
        let v = base + group.partner;
        for (let i = 0; i < h.length; i++, u += residues, v -= residues) sum = fround(sum + fround(h[i]! * fround(input[u]! + input[v]!)));
      } else {
        for (let i = 0; i < h.length; i++, u += residues) sum = fround(sum + fround(h[i]! * input[u]!));
      }
    }
    accumulator[n]! += sum;
    phase += down;
    if (phase >= up) {
      const carry = Math.floor(phase / up);
      lastInput += carry;
      phase -= carry * up;
    }
  }
}
