// Process trees from /proc, for scenarios that freeze a browser they launched (SIGSTOP/SIGCONT):
// the browser's own process and every descendant (renderers, zygotes, GPU and network services).

import { readdirSync, readFileSync } from 'node:fs';

/** `[pid, ppid]` of every process now (those that vanish while read are skipped). */
function table() {
  const rows = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      rows.push([Number(name), ppid]);
    } catch {
      // Gone between readdir and read.
    }
  }
  return rows;
}

/** Direct children of `pid`. */
export function childPids(pid) {
  return table().filter(([, ppid]) => ppid === pid).map(([p]) => p);
}

/** `roots` and all their descendants, parents before children. */
export function processTree(roots) {
  const rows = table();
  const out = [];
  const queue = [...roots];
  while (queue.length) {
    const p = queue.shift();
    if (out.includes(p)) continue;
    out.push(p);
    queue.push(...rows.filter(([, ppid]) => ppid === p).map(([c]) => c));
  }
  return out;
}

/**
 * Sends `sig` to every process of the trees under `roots` (read afresh: a browser may have
 * started a process since); returns the pids signalled. SIGSTOP goes parents first, so a parent
 * never sees a child stop; SIGCONT children first.
 */
export function signalTree(roots, sig) {
  const pids = processTree(roots);
  const order = sig === 'SIGCONT' ? [...pids].reverse() : pids;
  const done = [];
  for (const p of order) {
    try {
      process.kill(p, sig);
      done.push(p);
    } catch {
      // Exited meanwhile.
    }
  }
  return done;
}
