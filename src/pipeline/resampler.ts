/**
 * Rational polyphase resampling with a Kaiser-windowed sinc prototype.
 *
 * Specification (relative to the narrower Nyquist, fN = min(inRate, outRate) / 2):
 *   - passband 0 … 0.85·fN, ripple below 0.1 dB (the design lands near 0.002 dB);
 *   - stopband fN … outRate·L/2 attenuated by at least 70 dB, so downsampling cannot alias into the
 *     band kept and upsampling leaves no images of the input spectrum;
 *   - the 0.85·fN … fN transition is what lets the filter stay near 62 taps per output sample when
 *     upsampling (62·M/L when downsampling): the cost per call matters more than the last 15% of the
 *     band, and telephone audio has nothing there anyway.
 *
 * The prototype has an odd length, so its group delay is an integer number of samples at the
 * upsampled rate; reading output n at upsampled time n·M + delay makes output n represent timeline
 * time n / outRate exactly, whatever the input rate. Tracks recorded at different rates therefore
 * line up with each other to the sample.
 *
 * Designs depend only on (L, M); they are computed once per thread and cached here, never carried in
 * the per-call state.
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
 * Kaiser's length estimate is a little optimistic at these transition widths; designing a few dB
 * beyond the guaranteed attenuation keeps every measured ratio above it.
 */
const DESIGN_ATTENUATION_DB = 74;

export interface ResamplerDesign {
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
  phaseTable: Float64Array;
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

function designPrototype(up: number, down: number): Float64Array {
  if (up === 1 && down === 1) return Float64Array.of(1);
  // Frequencies in cycles per sample at the upsampled rate; the narrower Nyquist is 1 / (2·max(L, M)).
  const nyquist = 1 / (2 * Math.max(up, down));
  const transition = (RESAMPLER_SPEC.stopbandEdgeFraction - RESAMPLER_SPEC.passbandEdgeFraction) * nyquist;
  const cutoff = ((RESAMPLER_SPEC.stopbandEdgeFraction + RESAMPLER_SPEC.passbandEdgeFraction) / 2) * nyquist;
  let length = Math.ceil((DESIGN_ATTENUATION_DB - 7.95) / (14.357 * transition)) + 1;
  if (length % 2 === 0) length += 1;
  const beta = kaiserBeta(DESIGN_ATTENUATION_DB);
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
  for (let i = 0; i < length; i++) taps[i] = (taps[i]! * up) / sum;
  return taps;
}

interface Polyphase {
  taps: Float64Array;
  tapsPerPhase: number;
  phaseTable: Float64Array;
}

const polyphaseByRatio = new Map<string, Polyphase>();
const designsByRates = new Map<string, ResamplerDesign>();

function polyphaseFor(up: number, down: number): Polyphase {
  const key = `${up}/${down}`;
  const cached = polyphaseByRatio.get(key);
  if (cached) return cached;
  const taps = designPrototype(up, down);
  const tapsPerPhase = Math.ceil(taps.length / up);
  const phaseTable = new Float64Array(up * tapsPerPhase);
  for (let phase = 0; phase < up; phase++) {
    for (let k = 0; k < tapsPerPhase; k++) {
      const tapIndex = phase + k * up;
      phaseTable[phase * tapsPerPhase + (tapsPerPhase - 1 - k)] = tapIndex < taps.length ? taps[tapIndex]! : 0;
    }
  }
  const polyphase = { taps, tapsPerPhase, phaseTable };
  polyphaseByRatio.set(key, polyphase);
  return polyphase;
}

export function designResampler(inRate: number, outRate: number): ResamplerDesign {
  const key = `${inRate}/${outRate}`;
  const cached = designsByRates.get(key);
  if (cached) return cached;
  const divisor = gcd(inRate, outRate);
  const up = outRate / divisor;
  const down = inRate / divisor;
  const { taps, tapsPerPhase, phaseTable } = polyphaseFor(up, down);
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
    passbandEdgeHz: nyquistHz * RESAMPLER_SPEC.passbandEdgeFraction,
    stopbandEdgeHz: nyquistHz * RESAMPLER_SPEC.stopbandEdgeFraction,
  };
  designsByRates.set(key, design);
  return design;
}

/** Highest input index output n reads. */
export function lastInputFor(design: ResamplerDesign, outputIndex: number): number {
  return Math.floor((outputIndex * design.down + design.delay) / design.up);
}

/** Lowest input index output n reads (negative indices are the silence before the call). */
export function firstInputFor(design: ResamplerDesign, outputIndex: number): number {
  return lastInputFor(design, outputIndex) - design.tapsPerPhase + 1;
}

/** How many outputs (from index 0) can be computed once input [0, inputEnd) is known. */
export function outputsComputable(design: ResamplerDesign, inputEnd: number): number {
  // Output n is computable while n·M + delay < inputEnd·L.
  const limit = inputEnd * design.up - 1 - design.delay;
  if (limit < 0) return 0;
  return Math.floor(limit / design.down) + 1;
}

/**
 * Adds outputs [firstOutput, firstOutput + count) into `accumulator` (which the caller mixes several
 * tracks into). `input[0]` is timeline index `inputStart`; it must cover every index those outputs
 * read. The summation order is fixed, so the result does not depend on how the call was batched.
 */
export function resampleAccumulate(
  design: ResamplerDesign,
  input: Int16Array,
  inputStart: number,
  firstOutput: number,
  count: number,
  accumulator: Float64Array,
): void {
  if (design.up === 1 && design.down === 1) {
    const offset = firstOutput - inputStart;
    for (let n = 0; n < count; n++) accumulator[n]! += input[offset + n]!;
    return;
  }
  const { up, down, tapsPerPhase, phaseTable } = design;
  const time = firstOutput * down + design.delay;
  let lastInput = Math.floor(time / up);
  let phase = time - lastInput * up;
  for (let n = 0; n < count; n++) {
    const base = lastInput - tapsPerPhase + 1 - inputStart;
    const tapBase = phase * tapsPerPhase;
    // Four independent partial sums let the CPU overlap the multiply-adds; the order is still fixed.
    let sum0 = 0;
    let sum1 = 0;
    let sum2 = 0;
    let sum3 = 0;
    let k = 0;
    for (; k + 3 < tapsPerPhase; k += 4) {
      sum0 += phaseTable[tapBase + k]! * input[base + k]!;
      sum1 += phaseTable[tapBase + k + 1]! * input[base + k + 1]!;
      sum2 += phaseTable[tapBase + k + 2]! * input[base + k + 2]!;
      sum3 += phaseTable[tapBase + k + 3]! * input[base + k + 3]!;
    }
    for (; k < tapsPerPhase; k++) sum0 += phaseTable[tapBase + k]! * input[base + k]!;
    accumulator[n]! += sum0 + sum1 + (sum2 + sum3);
    phase += down;
    if (phase >= up) {
      const carry = Math.floor(phase / up);
      lastInput += carry;
      phase -= carry * up;
    }
  }
}
