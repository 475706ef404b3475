// maskmaker web page: one POST /v1/masks per run (output "annotated", mask_format "png"), nothing from elsewhere.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = 'maskmaker.apiKey';

  const form = $('form');
  const fileInput = $('file');
  const urlInput = $('url');
  const promptInput = $('prompt');
  const keyInput = $('api_key');
  const runButton = $('run');
  const cancelButton = $('cancel');
  const statusLine = $('status');

  // The chosen image: {kind: 'file', name, file, previewUrl} or {kind: 'url', name, url}; null when none.
  let source = null;
  let controller = null;   // AbortController of the request in flight
  let timer = null;        // elapsed-time ticker
  const objectUrls = { annotated: null, mask: null, crop: null, cropMask: null };

  // ---------- small helpers ----------
  const fmtMs = (ms) => (ms >= 10000 ? (ms / 1000).toFixed(1) + ' s' : Math.round(ms).toLocaleString('en') + ' ms');

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function baseName() {
    const name = (source && source.name) || 'image';
    const stem = name.replace(/[?#].*$/, '').replace(/\.[A-Za-z0-9]{1,5}$/, '').replace(/[^A-Za-z0-9_.-]+/g, '_');
    return stem || 'image';
  }

  function base64ToBlob(b64, type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  function dataUriToBlob(uri) {
    const comma = uri.indexOf(',');
    const meta = uri.slice(5, comma);
    return base64ToBlob(uri.slice(comma + 1), meta.split(';')[0] || 'application/octet-stream');
  }

  function setObjectUrl(slot, blob) {
    if (objectUrls[slot]) URL.revokeObjectURL(objectUrls[slot]);
    objectUrls[slot] = URL.createObjectURL(blob);
    return objectUrls[slot];
  }

  function readAsDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error || new Error('cannot read the file'));
      reader.readAsDataURL(file);
    });
  }

  // ---------- errors shown beside the control that caused them ----------
  const FIELDS = ['file', 'url', 'prompt', 'confidence_thresh', 'iou_thresh', 'grow_mask', 'negative_prompt',
    'feather', 'max_detections', 'api_key'];

  function clearError(field) {
    const box = $(field + '-error');
    if (box) { box.hidden = true; box.textContent = ''; }
    const input = $(field);
    if (input) input.removeAttribute('aria-invalid');
  }

  function clearErrors() {
    FIELDS.forEach(clearError);
    const box = $('run-error');
    box.hidden = true;
    box.textContent = '';
  }

  function showError(field, message) {
    const box = $(field + '-error') || $('run-error');
    box.textContent = message;
    box.hidden = false;
    const input = field === 'run' ? null : $(field);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      const more = input.closest('details');
      if (more) more.open = true;
      input.focus({ preventScroll: false });
    }
  }

  // Which control an API error belongs to, from its status and message (the API answers {"error": "..."}).
  function fieldForError(status, message) {
    const imageField = source && source.kind === 'url' ? 'url' : 'file';
    const m = String(message || '').trim();
    if (status === 401 || status === 403 || status === 406) return 'api_key';
    if (status === 413) return imageField;
    const named = m.match(/^([a-z_]+)\b/);
    if (named) {
      const name = named[1];
      if (name === 'phrases') return 'prompt';
      if (FIELDS.includes(name) && name !== 'file' && name !== 'url') return name;
    }
    if (/\bimage\b|\burl\b/i.test(m) || status === 502) return imageField;
    return 'run';
  }

  // ---------- the image: file, drop, paste or URL ----------
  function showSource() {
    const box = $('source');
    const preview = $('preview');
    if (!source) {
      box.hidden = true;
      preview.removeAttribute('src');
      return;
    }
    box.hidden = false;
    const label = $('source-label');
    if (source.kind === 'file') {
      preview.alt = 'Preview of ' + source.name;
      preview.src = source.previewUrl;
      label.textContent = source.name + ' (' + Math.max(1, Math.round(source.file.size / 1024)).toLocaleString('en') + '\u00a0KB)';
    } else {
      preview.alt = 'Preview of the image at the URL';
      preview.src = source.url;
      label.textContent = 'From URL: ' + source.url;
    }
  }

  $('preview').addEventListener('load', () => {
    const p = $('preview');
    if (!source) return;
    source.width = p.naturalWidth;
    source.height = p.naturalHeight;
    source.previewOk = true;
    const label = $('source-label');
    if (!label.dataset.sized || label.dataset.sized !== p.src) {
      label.dataset.sized = p.src;
      label.textContent += ', ' + p.naturalWidth + '\u00a0×\u00a0' + p.naturalHeight + '\u00a0px';
    }
  });
  $('preview').addEventListener('error', () => {
    // The server fetches URLs itself (and decodes formats a browser may not show); no preview is not an error.
    if (source) source.previewOk = false;
    $('preview').removeAttribute('src');
  });

  function useFile(file, name) {
    clearError('file');
    clearError('url');
    if (file.type && !file.type.startsWith('image/')) {
      showError('file', 'That file is not an image (' + file.type + '). Choose a JPEG, PNG, WebP, GIF, BMP or TIFF file.');
      return;
    }
    if (source && source.previewUrl) URL.revokeObjectURL(source.previewUrl);
    source = { kind: 'file', file, name: name || file.name || 'pasted-image', previewUrl: URL.createObjectURL(file) };
    urlInput.value = '';
    showSource();
    setStatus('Image ready: ' + source.name + '.');
  }

  function useUrl(text) {
    const url = text.trim();
    clearError('url');
    if (!url) {
      if (source && source.kind === 'url') { source = null; showSource(); }
      return;
    }
    if (source && source.previewUrl) URL.revokeObjectURL(source.previewUrl);
    const last = url.replace(/[?#].*$/, '').split('/').filter(Boolean).pop() || 'image';
    source = { kind: 'url', url, name: last.includes('.') ? last : 'image' };
    fileInput.value = '';
    showSource();
  }

  fileInput.addEventListener('change', () => {
    if (fileInput.files && fileInput.files[0]) useFile(fileInput.files[0]);
  });
  urlInput.addEventListener('change', () => useUrl(urlInput.value));
  urlInput.addEventListener('input', () => clearError('url'));

  $('clear-image').addEventListener('click', () => {
    if (source && source.previewUrl) URL.revokeObjectURL(source.previewUrl);
    source = null;
    fileInput.value = '';
    urlInput.value = '';
    showSource();
    setStatus('Image removed.');
    fileInput.focus();
  });

  // Drag and drop: anywhere on the page, highlighted on the drop zone. Keyboard users have the file field and paste.
  const zone = $('drop-zone');
  let dragDepth = 0;
  document.addEventListener('dragenter', (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).some((t) => t === 'Files' || t === 'text/uri-list')) return;
    e.preventDefault();
    dragDepth++;
    zone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) zone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (e.target && e.target.closest && e.target.closest('input[type=text], input[type=url], input[type=password]')) return;
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('drop', (e) => {
    if (e.target && e.target.closest && e.target.closest('input[type=text], input[type=url], input[type=password]')) return;
    e.preventDefault();
    dragDepth = 0;
    zone.classList.remove('dragging');
    const dt = e.dataTransfer;
    if (!dt) return;
    const file = Array.from(dt.files || []).find((f) => !f.type || f.type.startsWith('image/'));
    if (file) { useFile(file); return; }
    if (dt.files && dt.files.length) { useFile(dt.files[0]); return; }
    const uri = (dt.getData('text/uri-list') || dt.getData('text/plain') || '').split(/\r?\n/).find((l) => l && !l.startsWith('#'));
    if (uri && /^https?:\/\//i.test(uri.trim())) {
      urlInput.value = uri.trim();
      useUrl(urlInput.value);
    }
  });

  // Paste: an image from the clipboard anywhere; a URL when not typing in a text field.
  document.addEventListener('paste', (e) => {
    const cd = e.clipboardData;
    if (!cd) return;
    const file = Array.from(cd.files || []).find((f) => f.type.startsWith('image/'));
    if (file) {
      e.preventDefault();
      const ext = (file.type.split('/')[1] || 'png').replace('jpeg', 'jpg');
      useFile(file, file.name && file.name !== 'image.png' ? file.name : 'pasted-image.' + ext);
      return;
    }
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'file' && t.type !== 'range' && t.type !== 'checkbox'));
    const text = (cd.getData('text/plain') || '').trim();
    if (!typing && /^https?:\/\/\S+$/i.test(text)) {
      e.preventDefault();
      urlInput.value = text;
      useUrl(text);
      setStatus('Image URL pasted.');
    }
  });

  // ---------- sliders, key ----------
  const sliders = {
    confidence_thresh: (v) => Number(v).toFixed(2),
    iou_thresh: (v) => Number(v).toFixed(2),
    grow_mask: (v) => v + ' px',
    feather: (v) => v + ' px',
    opacity: (v) => Math.round(v * 100) + ' %',
  };
  for (const [id, fmt] of Object.entries(sliders)) {
    const input = $(id);
    const show = () => {
      const text = fmt(input.value);
      $(id + '-value').textContent = text;
      input.setAttribute('aria-valuetext', text);
      clearError(id);
    };
    input.addEventListener('input', show);
    show();
  }
  $('opacity').addEventListener('input', () => {
    $('overlay-mask').style.opacity = $('opacity').value;
  });
  promptInput.addEventListener('input', () => clearError('prompt'));
  $('negative_prompt').addEventListener('input', () => clearError('negative_prompt'));
  $('max_detections').addEventListener('input', () => clearError('max_detections'));

  try { keyInput.value = localStorage.getItem(KEY_STORE) || ''; } catch (_) { /* storage may be off */ }
  keyInput.addEventListener('input', () => {
    clearError('api_key');
    try {
      if (keyInput.value) localStorage.setItem(KEY_STORE, keyInput.value);
      else localStorage.removeItem(KEY_STORE);
    } catch (_) { /* storage may be off */ }
  });
  $('show-key').addEventListener('click', () => {
    const show = keyInput.type === 'password';
    keyInput.type = show ? 'text' : 'password';
    $('show-key').textContent = show ? 'Hide' : 'Show';
    $('show-key').setAttribute('aria-pressed', String(show));
  });
  $('forget-key').addEventListener('click', () => {
    keyInput.value = '';
    try { localStorage.removeItem(KEY_STORE); } catch (_) { /* ignore */ }
    setStatus('API key forgotten in this browser.');
    keyInput.focus();
  });

  // ---------- the request ----------
  function params() {
    const p = {
      prompt: promptInput.value.trim(),
      invert_mask: $('invert_mask').checked,
      confidence_thresh: Number($('confidence_thresh').value),
      iou_thresh: Number($('iou_thresh').value),
      grow_mask: Number($('grow_mask').value),
    };
    const negative = $('negative_prompt').value.trim();
    if (negative) p.negative_prompt = negative;
    const feather = Number($('feather').value);
    if (feather) p.feather = feather;
    const maxText = $('max_detections').value.trim();
    if (maxText !== '') p.max_detections = Number(maxText);
    // The crop for inpainting models (docs/inpainting.md): "" = none, 0 = original size, else the longer side.
    const cropSize = $('crop_size').value;
    if (cropSize !== '') {
      p.crop = { padding: 32, multiple_of: 64 };
      if (Number(cropSize) > 0) p.crop.target_size = Number(cropSize);
    }
    return p;
  }

  function setRunning(running) {
    runButton.disabled = running;
    cancelButton.disabled = !running;
    $('progress-row').hidden = !running;
    $('results').setAttribute('aria-busy', String(running));
    $('output').classList.toggle('stale', running);
    clearInterval(timer);
    if (running) {
      const start = performance.now();
      const tick = () => { $('elapsed').textContent = ((performance.now() - start) / 1000).toFixed(1) + ' s'; };
      tick();
      timer = setInterval(tick, 100);
    }
  }

  async function run() {
    if (controller) return;
    clearErrors();
    // A URL in its field is the image (choosing a file empties it), even if its change event has not fired yet.
    const typedUrl = urlInput.value.trim();
    if (typedUrl && !(source && source.kind === 'url' && source.url === typedUrl)) useUrl(typedUrl);
    if (!source) {
      showError('file', 'Choose an image file, drop or paste one, or give an image URL.');
      setStatus('No image yet.');
      return;
    }
    const p = params();
    if (!p.prompt) {
      showError('prompt', 'Type what to find, for example "bus" or "dog, bicycle".');
      setStatus('No prompt yet.');
      return;
    }
    if (p.max_detections !== undefined && !(Number.isInteger(p.max_detections) && p.max_detections >= 0 && p.max_detections <= 1000)) {
      showError('max_detections', 'max_detections must be a whole number between 0 and 1000.');
      return;
    }

    controller = new AbortController();
    const mine = controller;
    setRunning(true);
    setStatus('Working…');
    const started = performance.now();
    try {
      let image;
      if (source.kind === 'url') {
        image = source.url;
      } else {
        setStatus('Reading the image…');
        image = await readAsDataUrl(source.file);
        if (mine.signal.aborted) throw new DOMException('cancelled', 'AbortError');
        setStatus('Working…');
      }
      const body = Object.assign({}, p, { image, output: 'annotated', mask_format: 'png', instance_masks: false });
      const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
      const key = keyInput.value.trim();
      if (key) headers['x-api-key'] = key;
      const res = await fetch('/v1/masks', { method: 'POST', headers, body: JSON.stringify(body), signal: mine.signal });
      const text = await res.text();
      const elapsed = performance.now() - started;
      let data = null;
      try { data = JSON.parse(text); } catch (_) { data = null; }
      if (!res.ok) {
        let message = data && typeof data.error === 'string' ? data.error
          : 'the server answered HTTP ' + res.status + (text ? ': ' + text.slice(0, 200) : '');
        const retry = res.headers.get('Retry-After');
        if (retry && (res.status === 429 || res.status === 503)) message += ' (retry after ' + retry + ' s)';
        $('stale-note').hidden = $('output').hidden;
        const field = fieldForError(res.status, message);
        showError(field, message);
        setStatus('Failed (HTTP ' + res.status + '): ' + message);
        return;
      }
      if (!data || typeof data.mask !== 'string') {
        showError('run', 'The server answered something this page does not understand.');
        setStatus('Failed: unexpected answer.');
        return;
      }
      render(data, p, elapsed, res.headers);
      const n = data.detections || 0;
      setStatus((n === 1 ? 'Found 1 instance' : 'Found ' + n + ' instances') + ' in ' + fmtMs(elapsed) +
        '. Results are below.' + (data.unmatched && data.unmatched.length ? ' No match for: ' + data.unmatched.join(', ') + '.' : ''));
    } catch (err) {
      if (err && err.name === 'AbortError') {
        setStatus('Cancelled after ' + fmtMs(performance.now() - started) + '.');
      } else {
        const message = 'Cannot reach the server: ' + (err && err.message ? err.message : String(err));
        showError('run', message);
        setStatus(message);
      }
    } finally {
      if (controller === mine) controller = null;
      setRunning(false);
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  cancelButton.addEventListener('click', () => {
    if (controller) controller.abort();
    runButton.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && controller) {
      controller.abort();
      e.preventDefault();
    }
  });

  // ---------- the result ----------
  function render(data, p, elapsed, headers) {
    $('empty').hidden = true;
    $('output').hidden = false;
    $('stale-note').hidden = true;
    const stem = baseName();

    const annotatedType = data.image_content_type || 'image/png';
    const annotatedUrl = setObjectUrl('annotated', base64ToBlob(data.image, annotatedType));
    $('annotated').src = annotatedUrl;
    const dlA = $('download-annotated');
    dlA.href = annotatedUrl;
    dlA.download = stem + '-annotated.' + (annotatedType === 'image/jpeg' ? 'jpg' : 'png');

    const maskUrl = setObjectUrl('mask', dataUriToBlob(data.mask));
    $('mask').src = maskUrl;
    const dlM = $('download-mask');
    dlM.href = maskUrl;
    dlM.download = stem + '-mask.png';

    renderCrop(data, stem);

    // Overlay: the input image (or the annotated one when the browser cannot show the input) under a coloured
    // layer cut by the mask (CSS mask-image, luminance: white = shown).
    const overlayImage = $('overlay-image');
    const original = source && source.previewOk !== false ? (source.kind === 'file' ? source.previewUrl : source.url) : null;
    overlayImage.onerror = () => { overlayImage.onerror = null; overlayImage.src = annotatedUrl; };
    overlayImage.src = original || annotatedUrl;
    const layer = $('overlay-mask');
    layer.style.webkitMaskImage = 'url("' + maskUrl + '")';
    layer.style.maskImage = 'url("' + maskUrl + '")';
    layer.style.opacity = $('opacity').value;
    $('overlay').style.aspectRatio = data.width + ' / ' + data.height;

    const infer = data.infer_time_ms != null ? Number(data.infer_time_ms) : Number(headers.get('X-Inference-Time-Ms'));
    const t = data.timings_ms || {};
    const stages = ['decode', 'detect', 'encode', 'segment', 'post']
      .filter((s) => t[s] != null).map((s) => s + ' ' + fmtMs(t[s])).join(', ');
    $('summary').textContent = (data.detections === 1 ? '1 detection' : (data.detections || 0) + ' detections') +
      ' · ' + data.width + ' × ' + data.height + ' px · ' + fmtMs(elapsed) + ' in total' +
      (Number.isFinite(infer) ? ' (server ' + fmtMs(infer) + (stages ? ': ' + stages : '') + ')' : '') +
      (data.image_cache_hit ? ' · image embedding reused' : '');

    const tbody = $('detections').querySelector('tbody');
    tbody.textContent = '';
    const instances = Array.isArray(data.instances) ? data.instances : [];
    instances.forEach((inst, i) => {
      const tr = document.createElement('tr');
      const box = Array.isArray(inst.box) ? inst.box.map((v) => Math.round(v)).join(', ') : '';
      const cells = [String(i + 1), inst.phrase, inst.label || '', Number(inst.score).toFixed(2), box,
        inst.area != null ? Number(inst.area).toLocaleString('en') : ''];
      cells.forEach((c, j) => {
        const td = document.createElement(j === 1 ? 'th' : 'td');
        if (j === 1) td.scope = 'row';
        td.textContent = c;
        if (j === 3) td.className = 'num';
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    $('detections').hidden = instances.length === 0;
    $('no-detections').hidden = instances.length !== 0;

    const unmatched = Array.isArray(data.unmatched) ? data.unmatched : [];
    const ul = $('unmatched');
    ul.textContent = '';
    unmatched.forEach((u) => { const li = document.createElement('li'); li.textContent = u; ul.appendChild(li); });
    $('unmatched-block').hidden = unmatched.length === 0;

    const negatives = Array.isArray(data.negative_instances) ? data.negative_instances : [];
    const nl = $('negatives');
    nl.textContent = '';
    negatives.forEach((n) => {
      const li = document.createElement('li');
      li.textContent = n.phrase + ' (' + Number(n.score).toFixed(2) + ')';
      nl.appendChild(li);
    });
    $('negatives-block').hidden = negatives.length === 0;

    $('curl').textContent = curlFor(p);
  }

  // The crop's downloads beside the mask, or why there is none.
  function renderCrop(data, stem) {
    const crop = data.crop;
    $('crop-downloads').hidden = !crop;
    $('no-crop').hidden = !(crop === null && data.crop_reason);
    $('no-crop').textContent = crop === null && data.crop_reason ? 'No crop: ' + data.crop_reason + '.' : '';
    if (!crop) return;
    const dlC = $('download-crop');
    dlC.href = setObjectUrl('crop', base64ToBlob(crop.image, 'image/png'));
    dlC.download = stem + '-crop.png';
    const dlCM = $('download-crop-mask');
    dlCM.href = setObjectUrl('cropMask', base64ToBlob(crop.mask, 'image/png'));
    dlCM.download = stem + '-crop-mask.png';
    const [x1, y1, x2, y2] = crop.box;
    const [sx, sy] = crop.scale.map((v) => Number(v).toFixed(3));
    const scale = sx === sy ? sx : sx + ' × ' + sy;  // unequal when the box is wider or taller than the image
    $('crop-info').textContent = crop.width + ' × ' + crop.height + ' px, from the box ' + x1 + ', ' + y1 + ' – ' +
      x2 + ', ' + y2 + ' of the image (scale ' + scale + '). Paste the inpainted crop ' +
      'back there: maskmaker_client.stitch does it.';
  }

  function curlFor(p) {
    const native = p.grow_mask < 0 || p.negative_prompt || p.feather || p.max_detections !== undefined && p.max_detections !== 100;
    const image = source && source.kind === 'url' ? source.url : '<base64 of your image, or its https URL>';
    const body = native
      ? Object.assign({}, p, { image, output: 'mask', mask_format: 'png' })  // with the crop, when one is chosen
      : { prompt: p.prompt, image, invert_mask: p.invert_mask, confidence_thresh: p.confidence_thresh,
        iou_thresh: p.iou_thresh, return_mask: true, grow_mask: p.grow_mask, base64: false };
    const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
    const path = native ? '/v1/masks' : '/v1/inpaint-mask-maker';
    return 'curl -X POST ' + location.origin + path + ' \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      '  -H "x-api-key: $MASKMAKER_API_KEY" \\\n' +
      "  -d '" + json + "' \\\n" +
      (native ? '  | jq .' : '  -o mask.png');
  }
})();
