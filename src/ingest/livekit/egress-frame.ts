/**
 * Track Egress text frames: LiveKit sends `{"muted": true|false}` when the track is muted or unmuted.
 * Anything else (other events, not JSON, not an object) is ignored: the result is `null`, never a throw.
 * Binary frames are raw pcm_s16le and need no parsing (RoomTrackInput.push carries split samples over).
 */
export function parseEgressTextFrame(text: string): boolean | null {
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === 'object' && typeof (value as { muted?: unknown }).muted === 'boolean') {
      return (value as { muted: boolean }).muted;
    }
  } catch {
    // fall through
  }
  return null;
}
