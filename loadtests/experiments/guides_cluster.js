// The guides' Node cluster, as their availability experiment runs it: a master forks one worker per
// CPU (here: WORKERS) and forks a new one whenever a worker crashes; each worker exits after a random
// delay (CRASH_AFTER="MIN,MAX" seconds, the guides' setTimeout(process.exit, Math.random() * 10000)).
// Node's master hands connections out round-robin (cluster.SCHED_RR, the default on Linux), keeping
// those no worker has taken yet. `scalecube demo availability` runs it beside scalecube's cluster,
// the same load on both, when `node` is installed (shown, not judged).
//
// GET /cpu busy-waits WORK_MS milliseconds on the event loop (the guides' `for` loop; a time, not a
// count, so that a Node request costs what a Python one does), then answers JSON with the pid.
"use strict";
const cluster = require("node:cluster");
const http = require("node:http");

const port = Number(process.env.PORT || 8080);
const workers = Number(process.env.WORKERS || 2);
const [crashMin, crashMax] = (process.env.CRASH_AFTER || "1,10").split(",").map(Number);
const workMs = Number(process.env.WORK_MS || 3);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker, code) => {
    if (code !== 0 && !worker.exitedAfterDisconnect) cluster.fork(); // the guides' guardian
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill("SIGKILL");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  http
    .createServer((req, res) => {
      const until = performance.now() + workMs;
      while (performance.now() < until); // CPU work on the event loop
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ pid: process.pid, worker: cluster.worker.id }));
    })
    .listen(port, "127.0.0.1");
  const delay = (crashMin + Math.random() * (crashMax - crashMin)) * 1000;
  setTimeout(() => process.exit(1), delay); // death by random timeout
}
