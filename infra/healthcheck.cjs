#!/usr/bin/env node
// Container health probe: GET http://127.0.0.1:$HTTP_PORT<path> (default /healthz), exit 0 on a 2xx.
// Node is the only program the runtime image has (no curl, no wget), so the probe is a script.
'use strict';

const path = process.argv[2] || '/healthz';
const port = Number(process.env.HTTP_PORT || 8080);
const controller = new AbortController();
const timer = setTimeout(() => controller.abort(), 2500);

fetch(`http://127.0.0.1:${port}${path}`, { signal: controller.signal }).then(
  (response) => {
    clearTimeout(timer);
    process.exit(response.ok ? 0 : 1);
  },
  () => process.exit(1),
);
