// Reading what a page decoded from `room.stats()` (getStats of both PCs as plain objects):
// the e2e scenarios assert on framesDecoded / packetsReceived / frameWidth / nackCount, and
// docs/interop.md is filled from the transport and codec reports.

/** Summary of one page's stats: inbound per kind, outbound per kind, transports. */
export function summarize(stats) {
  const sum = { inbound: { video: [], audio: [] }, outbound: { video: [], audio: [] }, transport: {}, e2ee: stats.e2ee, iceRestarts: stats.iceRestarts };
  for (const pcName of ['publisher', 'subscriber']) {
    const reports = stats[pcName] ?? [];
    const byId = new Map(reports.map((r) => [r.id, r]));
    const codecOf = (r) => byId.get(r.codecId)?.mimeType ?? null;
    for (const r of reports) {
      if (r.type === 'inbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) {
        sum.inbound[r.kind].push({
          ssrc: r.ssrc,
          codec: codecOf(r),
          packetsReceived: r.packetsReceived ?? 0,
          packetsLost: r.packetsLost ?? 0,
          bytesReceived: r.bytesReceived ?? 0,
          framesDecoded: r.framesDecoded ?? 0,
          frameWidth: r.frameWidth ?? 0,
          frameHeight: r.frameHeight ?? 0,
          freezeCount: r.freezeCount ?? 0,
          totalFreezesDuration: r.totalFreezesDuration ?? 0,
          nackCount: r.nackCount ?? 0,
        });
      } else if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) {
        sum.outbound[r.kind].push({
          ssrc: r.ssrc,
          rid: r.rid,
          codec: codecOf(r),
          packetsSent: r.packetsSent ?? 0,
          nackCount: r.nackCount ?? 0,
          retransmittedPacketsSent: r.retransmittedPacketsSent ?? 0,
          frameWidth: r.frameWidth ?? 0,
          // Why the sender holds a layer back (Chromium: none, bandwidth, cpu, other).
          qualityLimitationReason: r.qualityLimitationReason,
          qualityLimitationDurations: r.qualityLimitationDurations,
        });
      } else if (r.type === 'transport') {
        sum.transport[pcName] = {
          dtlsState: r.dtlsState,
          tlsVersion: r.tlsVersion,
          dtlsCipher: r.dtlsCipher,
          srtpCipher: r.srtpCipher,
          dtlsRole: r.dtlsRole,
        };
      }
    }
    // Firefox has no `transport` report: its DTLS facts are absent; note what exists.
    if (!sum.transport[pcName]) {
      const pair = reports.find((r) => r.type === 'candidate-pair' && (r.nominated || r.selected) && r.state === 'succeeded');
      if (pair) sum.transport[pcName] = { dtlsState: 'connected (no transport report)', candidatePair: pair.state };
    }
  }
  return sum;
}

/** Totals over all inbound streams of a kind (simulcast/N tracks add up). */
export function inboundTotals(sum, kind) {
  const list = sum.inbound[kind];
  return {
    streams: list.length,
    packetsReceived: list.reduce((a, s) => a + s.packetsReceived, 0),
    framesDecoded: list.reduce((a, s) => a + s.framesDecoded, 0),
    frameWidth: Math.max(0, ...list.map((s) => s.frameWidth)),
    freezes: list.reduce((a, s) => a + s.freezeCount, 0),
    codec: list.find((s) => s.codec)?.codec ?? null,
  };
}

export function outboundTotals(sum, kind) {
  const list = sum.outbound[kind];
  return {
    streams: list.length,
    packetsSent: list.reduce((a, s) => a + s.packetsSent, 0),
    nackCount: list.reduce((a, s) => a + s.nackCount, 0),
    codec: list.find((s) => s.codec)?.codec ?? null,
  };
}
