// Init script of every e2e page: keeps WebRTC on 127.0.0.1. Only IPv4 UDP host
// candidates reach an ICE agent, with their address rewritten to 127.0.0.1 (the
// browser's ICE sockets are bound to 0.0.0.0 by the profile's ip_handling_policy),
// whether they arrive trickled or inside a description. Test-only: the shipped
// client signals candidates as the browser gathers them.
(() => {
  const rewrite = (line) => {
    const p = line.split(' ');
    if (p.length < 8 || p[2].toLowerCase() !== 'udp' || p[6] !== 'typ' || p[7] !== 'host') return null;
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(p[4])) return null;
    p[4] = '127.0.0.1';
    return p.join(' ');
  };
  window.__loopback = { rewritten: 0, dropped: 0 };
  const proto = RTCPeerConnection.prototype;
  const addIceCandidate = proto.addIceCandidate;
  proto.addIceCandidate = function (candidate, ...rest) {
    if (candidate && candidate.candidate) {
      const r = rewrite(candidate.candidate.replace(/^a=/, ''));
      if (!r) {
        window.__loopback.dropped++;
        return Promise.resolve();
      }
      window.__loopback.rewritten++;
      const init = typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
      candidate = { ...init, candidate: r };
    }
    return addIceCandidate.call(this, candidate, ...rest);
  };
  const setRemoteDescription = proto.setRemoteDescription;
  proto.setRemoteDescription = function (description, ...rest) {
    if (description && typeof description.sdp === 'string') {
      const sdp = description.sdp
        .split('\r\n')
        .flatMap((l) => {
          if (!l.startsWith('a=candidate:')) return [l];
          const r = rewrite(l.slice(2));
          return r ? [`a=${r}`] : [];
        })
        .join('\r\n');
      description = { type: description.type, sdp };
    }
    return setRemoteDescription.call(this, description, ...rest);
  };
})();
