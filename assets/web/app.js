// CallPath phone test page. Talks to the server that served it and to nothing else.
// One call per path the server offers (direct, each TURN URI with iceTransportPolicy "relay"),
// synthetic audio (WebAudio) and video (canvas), graded with the thresholds the server sends,
// which are the app's own (core/call/quality.py). Builds a report in the app's schema.
//
// Automation (tests, kiosks): ?autorun=1 starts at once, &send=1 sends the report when done,
// &addresses=1 ticks "include addresses", &seconds=N measures N s per path, &lang=xx picks
// the language, &paths=direct,turn-udp limits the paths, &codec=VP9 offers only that video
// codec (to check how the server treats it). A token, if the server wants one: #token=...
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  const $ = (id) => document.getElementById(id);
  const CONNECT_TIMEOUT_MS = 15000;
  const PARALLEL_CALLS = 2;
  let config = null;
  let strings = {};
  let lastReport = null;
  let running = false;

  function t(key, values) {
    let text = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    for (const name in values || {}) text = text.split("{" + name + "}").join(String(values[name]));
    return text;
  }

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) throw new Error((data && data.error) || "HTTP " + response.status);
    return data;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- quality: the same computation as core/call/quality.py --------------------------------

  function voiceMos(rttMs, jitterMs, lossPct) {
    const latency = rttMs + 2 * jitterMs + 10;
    let rating = latency < 160 ? 94.768 - latency / 40 : 94.768 - (latency - 120) / 10;
    rating = lossPct > rating / 2.5 ? 0 : Math.max(rating - 2.5 * lossPct, 6.52);
    const mos = 1 + 0.035 * rating + 7e-6 * rating * (rating - 60) * (100 - rating);
    return Math.min(Math.max(mos, 1), 4.5);
  }

  const clamp = (value, low, high) => Math.min(Math.max(value, low), high);
  const num = (value) => String(Number(value.toPrecision(6)));
  const finite = (value) => typeof value === "number" && isFinite(value);
  const median = (values) => {
    const sorted = values.slice().sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  };
  const mean = (values) => values.reduce((sum, value) => sum + value, 0) / values.length;

  function videoBitrateThresholds(pixels, th) {
    const scale = Math.max(pixels, 0) / (640 * 480);
    return [
      clamp(th.video_good_bitrate_kbps * scale, th.video_good_bitrate_floor_kbps, th.video_good_bitrate_kbps),
      clamp(th.video_unusable_bitrate_kbps * scale, th.video_unusable_bitrate_floor_kbps, th.video_unusable_bitrate_kbps),
    ];
  }

  function aggregate(samples, th) {
    const byDirection = { sent: [], received: [] };
    for (const sample of samples) byDirection[sample.direction].push(sample);
    for (const direction in byDirection) byDirection[direction].sort((a, b) => a.t - b.t);
    const values = (list, key) => list.map((s) => s[key]).filter(finite);
    let rtts = values(byDirection.sent, "rtt_ms");
    if (!rtts.length) rtts = values(samples, "rtt_ms");
    const perDirection = (key) =>
      ["sent", "received"].map((d) => values(byDirection[d], key)).filter((v) => v.length);
    const worst = (list) => (list.length ? Math.max.apply(null, list) : null);
    const bitrates = perDirection("bitrate_kbps").map((v) =>
      mean(v.length >= th.ramp_up_min_samples ? v.slice(1) : v));
    const receivedBitrates = values(byDirection.received, "bitrate_kbps");
    return {
      rtt: rtts.length ? median(rtts) : null,
      jitter: worst(perDirection("jitter_ms").map(median)),
      loss: worst(perDirection("loss_pct").map(mean)),
      bitrate: bitrates.length ? Math.min.apply(null, bitrates) : null,
      receivedMedia: receivedBitrates.length
        ? receivedBitrates.some((v) => v > 0) : byDirection.received.length > 0,
    };
  }

  function summarize(kind, samples, th, pixels, stalled) {
    if (!samples.length) {
      return media("unusable", stalled ? ["media_stalled", "no_samples"] : ["no_samples"], {}, []);
    }
    const a = aggregate(samples, th);
    let unusable = [];
    const notGood = [];
    let mos = null;
    if (kind === "audio") {
      if (a.rtt !== null && a.jitter !== null && a.loss !== null) mos = voiceMos(a.rtt, a.jitter, a.loss);
      if (a.bitrate !== null && a.bitrate < th.voice_unusable_bitrate_kbps) unusable.push("bitrate_below_" + num(th.voice_unusable_bitrate_kbps) + "kbps");
      if (a.loss !== null && a.loss > th.voice_unusable_loss_pct) unusable.push("loss_above_" + num(th.voice_unusable_loss_pct) + "pct");
      if (mos !== null && mos < th.voice_unusable_mos) unusable.push("mos_below_" + num(th.voice_unusable_mos));
      if (a.loss === null) notGood.push("loss_unknown");
      else if (a.loss >= th.voice_good_loss_pct) notGood.push("loss_above_" + num(th.voice_good_loss_pct) + "pct");
      if (a.rtt === null) notGood.push("rtt_unknown");
      else if (a.rtt >= th.voice_good_rtt_ms) notGood.push("rtt_above_" + num(th.voice_good_rtt_ms) + "ms");
      if (a.jitter === null) notGood.push("jitter_unknown");
      else if (a.jitter >= th.voice_good_jitter_ms) notGood.push("jitter_above_" + num(th.voice_good_jitter_ms) + "ms");
      if (mos === null) notGood.push("mos_unknown");
      else if (mos < th.voice_good_mos) notGood.push("mos_below_" + num(th.voice_good_mos));
    } else {
      const [goodKbps, unusableKbps] = videoBitrateThresholds(pixels, th);
      if (a.bitrate === null) notGood.push("bitrate_unknown");
      else if (a.bitrate < unusableKbps) unusable.push("bitrate_below_" + num(unusableKbps) + "kbps");
      else if (a.bitrate < goodKbps) notGood.push("bitrate_below_" + num(goodKbps) + "kbps");
      if (a.loss === null) notGood.push("loss_unknown");
      else if (a.loss > th.video_unusable_loss_pct) unusable.push("loss_above_" + num(th.video_unusable_loss_pct) + "pct");
      else if (a.loss > th.video_good_loss_pct) notGood.push("loss_above_" + num(th.video_good_loss_pct) + "pct");
    }
    if (!a.receivedMedia) unusable = ["no_media_received"].concat(unusable);
    let grade = "good";
    let reasons = [];
    if (unusable.length) { grade = "unusable"; reasons = unusable; }
    else if (notGood.length) { grade = "degraded"; reasons = notGood; }
    if (stalled) {
      reasons = ["media_stalled"].concat(reasons);
      if (grade === "good") grade = "degraded";
    }
    return media(grade, reasons, { mos: mos, rtt: a.rtt, jitter: a.jitter, loss: a.loss, bitrate: a.bitrate }, samples);
  }

  const round = (value, digits) =>
    finite(value) ? Math.round(value * Math.pow(10, digits)) / Math.pow(10, digits) : null;

  function media(grade, reasons, a, samples) {
    return {
      grade: grade,
      mos: round(a.mos, 2),
      rtt_ms: round(a.rtt, 1),
      jitter_ms: round(a.jitter, 1),
      loss_pct: round(a.loss, 2),
      bitrate_kbps: round(a.bitrate, 1),
      reasons: reasons,
      samples: samples,
    };
  }

  const RANK = { good: 0, degraded: 1, unusable: 2, not_tested: 3 };
  function rankKey(q) {
    return [RANK[q.grade], q.mos !== null ? -q.mos : Infinity, q.loss_pct !== null ? q.loss_pct : Infinity,
      q.rtt_ms !== null ? q.rtt_ms : Infinity, q.bitrate_kbps !== null ? -q.bitrate_kbps : Infinity];
  }
  function compareRank(a, b) {
    const x = rankKey(a);
    const y = rankKey(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  }

  // --- synthetic media ----------------------------------------------------------------------

  function syntheticMedia() {
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    const audioContext = new AudioContextClass();
    const oscillator = audioContext.createOscillator();
    oscillator.frequency.value = 440;
    const wobble = audioContext.createOscillator();
    wobble.frequency.value = 3;
    const wobbleGain = audioContext.createGain();
    wobbleGain.gain.value = 60;
    wobble.connect(wobbleGain).connect(oscillator.frequency);
    const destination = audioContext.createMediaStreamDestination();
    oscillator.connect(destination);
    oscillator.start();
    wobble.start();
    if (audioContext.resume) audioContext.resume();

    const canvas = document.createElement("canvas");
    canvas.width = config.video.width;
    canvas.height = config.video.height;
    const context = canvas.getContext("2d");
    let frame = 0;
    // Moving blocks of noise: enough detail that the encoder has to send a real bitrate.
    const draw = () => {
      frame++;
      const w = canvas.width;
      const h = canvas.height;
      context.fillStyle = "hsl(" + (frame * 3) % 360 + ",60%,40%)";
      context.fillRect(0, 0, w, h);
      for (let i = 0; i < 48; i++) {
        context.fillStyle = "rgb(" + ((Math.random() * 256) | 0) + "," + ((Math.random() * 256) | 0) + "," + ((Math.random() * 256) | 0) + ")";
        context.fillRect((Math.random() * w) | 0, (Math.random() * h) | 0, 8 + ((Math.random() * 40) | 0), 8 + ((Math.random() * 40) | 0));
      }
      context.fillStyle = "#fff";
      context.font = "20px sans-serif";
      context.fillText(String(frame), 10 + (frame * 4) % (w - 60), h / 2);
    };
    draw();
    const timer = setInterval(draw, 33);
    const videoStream = canvas.captureStream(30);
    return {
      audio: destination.stream.getAudioTracks()[0],
      video: videoStream.getVideoTracks()[0],
      stop: () => {
        clearInterval(timer);
        videoStream.getTracks().forEach((track) => track.stop());
        destination.stream.getTracks().forEach((track) => track.stop());
        audioContext.close();
      },
    };
  }

  // --- one call ------------------------------------------------------------------------------

  function statsByType(report) {
    const all = new Map();
    report.forEach((stat) => all.set(stat.id, stat));
    return all;
  }

  function selectedPair(all) {
    let pair = null;
    all.forEach((stat) => {
      if (stat.type === "transport" && stat.selectedCandidatePairId) pair = all.get(stat.selectedCandidatePairId);
    });
    if (!pair) {
      all.forEach((stat) => {
        if (stat.type === "candidate-pair" && (stat.selected || (stat.nominated && stat.state === "succeeded"))) pair = pair || stat;
      });
    }
    if (!pair) return null;
    const local = all.get(pair.localCandidateId);
    const remote = all.get(pair.remoteCandidateId);
    if (!local || !remote) return null;
    return { pair: pair, local: local, remote: remote };
  }

  function relayServer(path) {
    const rest = path.urls.replace(/^turns?:/i, "").split("?")[0];
    return rest.indexOf(":") >= 0 || rest.startsWith("[") ? rest : rest + ":" + (/^turns:/i.test(path.urls) ? 5349 : 3478);
  }

  function pairRecord(found, path) {
    const l = found.local;
    const r = found.remote;
    const relay = l.candidateType === "relay";
    return {
      local_type: l.candidateType,
      local_address: l.address || l.ip || "",
      local_port: l.port || 0,
      remote_type: r.candidateType,
      remote_address: r.address || r.ip || "",
      remote_port: r.port || 0,
      relay_transport: relay ? (l.relayProtocol || null) : null,
      relay_server: relay && path.urls ? relayServer(path) : null,
    };
  }

  function waitFor(pc, predicate, events, timeoutMs) {
    return new Promise((resolve) => {
      if (predicate()) return resolve(true);
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        events.forEach((name) => pc.removeEventListener(name, check));
        resolve(predicate());
      }
      function check() { if (predicate()) done(); }
      events.forEach((name) => pc.addEventListener(name, check));
    });
  }

  function onlyCodec(pc, name) {
    if (!name || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
    const codecs = RTCRtpSender.getCapabilities("video").codecs.filter(
      (codec) => codec.mimeType.toLowerCase() === "video/" + name.toLowerCase());
    pc.getTransceivers().forEach((transceiver) => {
      if (transceiver.sender.track && transceiver.sender.track.kind === "video" && codecs.length) {
        transceiver.setCodecPreferences(codecs);
      }
    });
  }

  async function callPath(path, source, startedAt, onState) {
    const result = {
      id: path.id, server: path.urls || null, failure: null, pair: null, exercised: false,
      stages: [], samples: { audio: [], video: [] }, stalled: { audio: false, video: false },
      startedMs: performance.now(),
    };
    const stage = (name, begin, failure, evidence) => {
      result.stages.push({
        stage: name,
        started_at_s: round((begin - startedAt) / 1000, 3),
        duration_s: round((performance.now() - begin) / 1000, 3),
        failure: failure || null,
        evidence: evidence || {},
      });
      if (failure && !result.failure) result.failure = failure;
    };
    const configuration = { bundlePolicy: "max-bundle", iceServers: [] };
    if (path.urls) {
      configuration.iceServers = [{ urls: path.urls, username: path.username, credential: path.credential }];
      configuration.iceTransportPolicy = "relay";
    }
    let pc = null;
    let callId = null;
    const elements = [];
    try {
      pc = new RTCPeerConnection(configuration);
      const stream = new MediaStream();
      const audio = source.audio.clone();
      const video = source.video.clone();
      stream.addTrack(audio);
      stream.addTrack(video);
      pc.addTrack(audio, stream);
      pc.addTrack(video, stream);
      onlyCodec(pc, params.get("codec"));
      pc.addEventListener("track", (event) => {
        // Echoed tracks must play somewhere or browsers do not decode them; muted, off screen.
        const element = document.createElement(event.track.kind === "audio" ? "audio" : "video");
        element.muted = true;
        element.autoplay = true;
        element.playsInline = true;
        element.srcObject = new MediaStream([event.track]);
        $("media").appendChild(element);
        elements.push(element);
        const playing = element.play();
        if (playing && playing.catch) playing.catch(() => {});
      });
      onState(path, "connecting");
      let begin = performance.now();
      await pc.setLocalDescription(await pc.createOffer());
      // No trickle ICE: wait for gathering to finish (or the server's limit), then offer.
      await waitFor(pc, () => pc.iceGatheringState === "complete", ["icegatheringstatechange"],
        config.gathering_wait_s * 1000);
      const sdp = pc.localDescription.sdp;
      if (path.urls) {
        const relayed = / typ relay /.test(sdp);
        stage("turn_allocate", begin, relayed ? null : "turn_allocate_failed", { relay_candidates: relayed });
        if (!relayed) return result;
      }
      begin = performance.now();
      let answer;
      try {
        answer = await api("POST", "/offer", { type: "offer", sdp: sdp });
      } catch (error) {
        stage("connect", begin, "signalling_failed", { error: String(error.message || error) });
        return result;
      }
      callId = answer.call_id;
      const rejectedVideo = /^m=video 0 /m.test(answer.sdp);
      stage("connect", begin, null, rejectedVideo ? { video_rejected: true } : {});
      begin = performance.now();
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      const connected = await waitFor(pc,
        () => pc.connectionState === "connected" || pc.connectionState === "failed",
        ["connectionstatechange", "iceconnectionstatechange"], CONNECT_TIMEOUT_MS);
      const state = pc.connectionState;
      if (!connected || state !== "connected") {
        const ice = pc.iceConnectionState;
        const failure = ice === "failed" ? "ice_failed" : ice === "connected" || ice === "completed"
          ? "dtls_failed" : "generic_timeout_error";
        stage("ice", begin, failure, { ice_state: ice, connection_state: state });
        return result;
      }
      const found = selectedPair(statsByType(await pc.getStats()));
      const wanted = path.relay_protocol || null;
      if (found) {
        result.pair = pairRecord(found, path);
        result.exercised = wanted
          ? result.pair.local_type === "relay" && result.pair.relay_transport === wanted
          : result.pair.local_type !== "relay";
      }
      stage("ice", begin, null, {});
      stage("dtls", begin, result.exercised ? null : "path_not_exercised", {
        local_type: result.pair ? result.pair.local_type : null,
        relay_protocol: result.pair ? result.pair.relay_transport : null,
      });
      if (!result.exercised) return result;
      onState(path, "measuring");
      begin = performance.now();
      await measure(pc, result, startedAt, rejectedVideo);
      const audioUp = result.samples.audio.some((s) => s.direction === "received" && s.bitrate_kbps > 0);
      stage("media_up", begin, audioUp ? null : "media_timeout", {});
      stage("quality", begin, null, {});
      return result;
    } catch (error) {
      result.failure = result.failure || "unknown_failure";
      result.error = String((error && error.message) || error);
      return result;
    } finally {
      result.durationS = round((performance.now() - result.startedMs) / 1000, 3);
      if (callId) api("DELETE", "/calls/" + encodeURIComponent(callId)).catch(() => {});
      if (pc) pc.close();
      pc = null;
      elements.forEach((element) => { element.srcObject = null; element.remove(); });
      onState(path, "done");
    }
  }

  async function measure(pc, result, startedAt, videoRejected) {
    const seconds = parseFloat(params.get("seconds")) || config.measure_s;
    let previous = null;
    let previousAt = 0;
    const silentSince = { audio: null, video: null };
    for (let tick = 0; tick <= Math.ceil(seconds); tick++) {
      if (tick > 0) await sleep(1000);
      const now = performance.now();
      const all = statsByType(await pc.getStats());
      const current = {};
      all.forEach((stat) => {
        if (stat.type === "outbound-rtp" || stat.type === "inbound-rtp" || stat.type === "remote-inbound-rtp") {
          const kind = stat.kind || stat.mediaType;
          current[stat.type + ":" + kind] = stat;
        }
      });
      let pairRtt = null;
      const found = selectedPair(all);
      if (found && finite(found.pair.currentRoundTripTime)) pairRtt = found.pair.currentRoundTripTime * 1000;
      if (previous) {
        const dt = (now - previousAt) / 1000;
        const at = round((now - startedAt) / 1000, 3);
        for (const kind of ["audio", "video"]) {
          if (kind === "video" && videoRejected) continue;
          const out = current["outbound-rtp:" + kind];
          const outBefore = previous["outbound-rtp:" + kind];
          const remote = current["remote-inbound-rtp:" + kind];
          const inbound = current["inbound-rtp:" + kind];
          const inBefore = previous["inbound-rtp:" + kind];
          if (out && outBefore) {
            const rtt = remote && finite(remote.roundTripTime) ? remote.roundTripTime * 1000 : pairRtt;
            result.samples[kind].push(sample(at, "sent", rtt,
              remote && finite(remote.jitter) ? remote.jitter * 1000 : null,
              remote && finite(remote.fractionLost) ? remote.fractionLost * 100 : null,
              ((out.bytesSent - outBefore.bytesSent) * 8) / dt / 1000));
          }
          let bitrate = 0;
          if (inbound) {
            const before = inBefore || { bytesReceived: 0, packetsReceived: 0, packetsLost: 0 };
            const received = (inbound.packetsReceived || 0) - (before.packetsReceived || 0);
            const lost = Math.max((inbound.packetsLost || 0) - (before.packetsLost || 0), 0);
            bitrate = (((inbound.bytesReceived || 0) - (before.bytesReceived || 0)) * 8) / dt / 1000;
            result.samples[kind].push(sample(at, "received", null,
              finite(inbound.jitter) ? inbound.jitter * 1000 : null,
              received + lost > 0 ? (lost * 100) / (received + lost) : null, bitrate));
          }
          // Stalled: media had flowed, then nothing for more than two seconds.
          const flowed = result.samples[kind].some((s) => s.direction === "received" && s.bitrate_kbps > 0);
          if (bitrate > 0) silentSince[kind] = null;
          else if (flowed && silentSince[kind] === null) silentSince[kind] = now;
          if (silentSince[kind] !== null && now - silentSince[kind] > 2000) result.stalled[kind] = true;
        }
      }
      previous = current;
      previousAt = now;
    }
  }

  function sample(at, direction, rtt, jitter, loss, bitrate) {
    return {
      t: at,
      direction: direction,
      rtt_ms: round(rtt === null ? null : Math.max(rtt, 0), 1),
      jitter_ms: round(jitter === null ? null : Math.max(jitter, 0), 1),
      loss_pct: round(loss === null ? null : clamp(loss, 0, 100), 2),
      bitrate_kbps: round(Math.max(bitrate, 0), 1),
    };
  }

  // --- report --------------------------------------------------------------------------------

  const notTested = () => media("not_tested", [], {}, []);

  function pathReport(result) {
    const th = config.thresholds;
    const pixels = config.video.width * config.video.height;
    const measured = result.exercised && result.stages.some((s) => s.stage === "quality");
    const videoRejected = result.stages.some((s) => s.evidence && s.evidence.video_rejected);
    return {
      id: result.id,
      exercised: result.exercised,
      failure: result.failure,
      server: result.server,
      duration_s: result.durationS || 0,
      selected_pair: result.pair,
      stages: result.stages,
      voice: measured ? summarize("audio", result.samples.audio, th, pixels, result.stalled.audio) : notTested(),
      video: measured && !videoRejected
        ? summarize("video", result.samples.video, th, pixels, result.stalled.video) : notTested(),
    };
  }

  function verdictOf(paths) {
    const restored = (kind) => paths.filter((p) => p.exercised && p[kind].grade === "good")
      .sort((a, b) => compareRank(a[kind], b[kind])).map((p) => p.id);
    const best = (kind) => paths.filter((p) => p.exercised && p[kind].grade !== "not_tested")
      .sort((a, b) => compareRank(a[kind], b[kind]))[0] || null;
    const voice = best("voice");
    const video = best("video");
    let headline;
    if (!voice && !video) headline = t("nothing");
    else {
      const sentence = (bestPath, kind, works, none) => bestPath && bestPath[kind].grade !== "unusable"
        ? t(works, { path: t("path." + bestPath.id) }) : t(none);
      headline = sentence(voice, "voice", "voice_works", "voice_none") + " " +
        sentence(video, "video", "video_works", "video_none");
    }
    return { voice: { restored_by: restored("voice") }, video: { restored_by: restored("video") }, headline: headline };
  }

  const isoNow = (date) => date.toISOString().replace(/\.(\d{3})\d*Z$/, ".$1Z");

  function buildReport(results, startedAt, finishedAt) {
    const paths = results.map(pathReport);
    return {
      schema_version: 1,
      software: { name: config.software, version: config.version },
      started_at: isoNow(startedAt),
      finished_at: isoNow(finishedAt),
      profile: "web",
      target: "echo",
      scenario: null,
      cancelled: false,
      redacted: false,
      paths: paths,
      verdict: verdictOf(paths),
      probes: [],
      findings: [],
    };
  }

  // Addresses → host-N, stable within the report; loopback kept (as the app's redaction).
  function redacted(report) {
    const copy = JSON.parse(JSON.stringify(report));
    const names = new Map();
    const pseudonym = (value) => {
      if (!value || /^(127\.|::1$|localhost$)/i.test(value)) return value;
      if (!names.has(value.toLowerCase())) names.set(value.toLowerCase(), "host-" + (names.size + 1));
      return names.get(value.toLowerCase());
    };
    const hostPort = (value) => {
      if (!value) return value;
      const match = /^(\[[^\]]+\]|[^:]+)(:\d+)?$/.exec(value);
      return match ? pseudonym(match[1].replace(/^\[|\]$/g, "")) + (match[2] || "") : pseudonym(value);
    };
    for (const path of copy.paths) {
      if (path.server) {
        path.server = path.server.replace(/^(turns?:)([^?]+)/i, (all, scheme, rest) => scheme + hostPort(rest));
      }
      const pair = path.selected_pair;
      if (pair) {
        pair.local_address = pseudonym(pair.local_address);
        pair.remote_address = pseudonym(pair.remote_address);
        pair.relay_server = pair.relay_server ? hostPort(pair.relay_server) : null;
      }
    }
    copy.redacted = true;
    return copy;
  }

  // --- page ----------------------------------------------------------------------------------

  function figures(q) {
    const show = (value) => (value === null ? "–" : String(value));
    return t("figures", { rtt: show(q.rtt_ms), jitter: show(q.jitter_ms), loss: show(q.loss_pct), bitrate: show(q.bitrate_kbps) });
  }

  function showPath(item, path) {
    item.textContent = "";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = t("path." + path.id);
    item.appendChild(name);
    if (path.failure) {
      const line = document.createElement("div");
      line.className = "failed";
      line.textContent = path.failure === "path_not_exercised" ? t("not_proven") : t("failed", { failure: path.failure });
      item.appendChild(line);
      return;
    }
    for (const [kind, label] of [["voice", "voice"], ["video", "video"]]) {
      const q = path[kind];
      const line = document.createElement("div");
      const grade = document.createElement("span");
      grade.className = q.grade;
      grade.textContent = t(q.grade);
      line.append(t(label) + ": ", grade);
      if (q.grade !== "not_tested") {
        const small = document.createElement("div");
        small.className = "figures";
        small.textContent = (q.mos !== null ? "MOS " + q.mos + ", " : "") + figures(q);
        line.appendChild(small);
      }
      item.appendChild(line);
    }
  }

  function selectedPaths() {
    const only = params.get("paths");
    if (!only) return config.paths;
    const wanted = only.split(",");
    return config.paths.filter((path) => wanted.indexOf(path.id) >= 0);
  }

  async function run() {
    if (running) return;
    running = true;
    $("start").disabled = true;
    $("verdict").hidden = false;
    $("send-box").hidden = true;
    $("send-result").textContent = "";
    $("headline").textContent = "";
    const list = $("paths");
    list.textContent = "";
    let source = null;
    try {
      // Sound starts inside the click: browsers (Safari above all) keep audio silent otherwise.
      source = syntheticMedia();
      // Fresh credentials for every run: they are short-lived.
      config = await api("GET", configUrl());
      const paths = selectedPaths();
      const items = new Map();
      for (const path of paths) {
        const item = document.createElement("li");
        item.id = "path-" + path.id;
        item.textContent = t("path." + path.id);
        list.appendChild(item);
        items.set(path.id, item);
      }
      const startedAt = new Date();
      const startedMs = performance.now();
      let done = 0;
      $("progress").textContent = t("running", { done: 0, total: paths.length });
      const onState = (path, state) => {
        if (state === "done") {
          done++;
          $("progress").textContent = t("running", { done: done, total: paths.length });
        } else {
          items.get(path.id).textContent = t("path." + path.id) + " – " + t(state);
        }
      };
      const results = new Array(paths.length);
      let next = 0;
      const worker = async () => {
        while (next < paths.length) {
          const index = next++;
          results[index] = await callPath(paths[index], source, startedMs, onState);
        }
      };
      const workers = [];
      for (let i = 0; i < Math.min(PARALLEL_CALLS, paths.length); i++) workers.push(worker());
      await Promise.all(workers);
      lastReport = buildReport(results, startedAt, new Date());
      lastReport.paths.forEach((path) => showPath(items.get(path.id), path));
      $("headline").textContent = lastReport.verdict.headline;
      $("progress").textContent = "";
      $("send-box").hidden = !config.reports;
      window.callpathReport = lastReport;
      document.documentElement.dataset.state = "done";
      if (params.get("send") === "1" && config.reports) await send();
    } catch (error) {
      $("progress").textContent = t("cannot_start", { error: (error && error.message) || error });
      document.documentElement.dataset.state = "error";
    } finally {
      if (source) source.stop();
      running = false;
      $("start").disabled = false;
      $("start").textContent = t("again");
    }
  }

  async function send() {
    if (!lastReport) return;
    const report = $("addresses").checked ? lastReport : redacted(lastReport);
    $("send").disabled = true;
    $("send-result").textContent = t("sending");
    try {
      const answer = await api("POST", "/reports", { report: report });
      $("send-result").textContent = "";
      const [before, after] = t("sent", { code: "\u0000" }).split("\u0000");
      const code = document.createElement("span");
      code.className = "code";
      code.textContent = answer.code;
      $("send-result").append(before, code, after || "");
      document.documentElement.dataset.sent = answer.code;
    } catch (error) {
      $("send-result").textContent = t("send_failed", { error: (error && error.message) || error });
      document.documentElement.dataset.sent = "error";
    } finally {
      $("send").disabled = false;
    }
  }

  function configUrl() {
    const lang = params.get("lang");
    return "/web/config" + (lang ? "?lang=" + encodeURIComponent(lang) : "");
  }

  async function start() {
    try {
      config = await api("GET", configUrl());
    } catch (error) {
      $("progress").textContent = "CallPath: " + ((error && error.message) || error);
      return;
    }
    strings = config.strings;
    document.documentElement.lang = config.language;
    document.documentElement.dir = config.rtl ? "rtl" : "ltr";
    document.title = t("title");
    $("title").textContent = t("title");
    $("intro").textContent = t("intro");
    $("start").textContent = t("start");
    $("send").textContent = t("send");
    $("addresses-label").textContent = t("include_addresses");
    if (params.get("addresses") === "1") $("addresses").checked = true;
    if (!window.RTCPeerConnection) {
      $("progress").textContent = t("unsupported");
      return;
    }
    $("start").disabled = false;
    $("start").addEventListener("click", run);
    $("send").addEventListener("click", send);
    if (params.get("autorun") === "1") run();
  }

  start();
})();
