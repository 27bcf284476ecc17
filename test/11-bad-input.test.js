'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { cases, check, makeContext, TINY } = require('./bad-inputs');
const { ROOT, runNode } = require('./helpers');

describe(`bad inputs: ${cases.length} cases raise the right error class with a message naming the problem`, () => {
  let ctx;
  before(async () => {
    ctx = await makeContext();
  });
  after(() => ctx.cleanup());

  it('the table has at least 60 cases across tensors, configs, forward, fit, data sets and files', () => {
    const areas = new Set(cases.map((c) => c.area));
    for (const a of ['tensor', 'config', 'forward', 'fit', 'data', 'files']) assert.ok(areas.has(a), a);
    assert.ok(cases.length >= 60, String(cases.length));
  });

  for (const area of [...new Set(cases.map((c) => c.area))]) {
    describe(area, () => {
      for (const c of cases.filter((x) => x.area === area)) {
        it(`${c.title} -> ${c.error}`, async () => {
          const problem = await check(c, ctx);
          assert.equal(problem, undefined, problem);
        });
      }
    });
  }
});

describe('bad inputs in a child process (an abort would fail here, not kill the runner)', () => {
  it('every case ends with a JS error, and the process exits normally', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'bad-inputs.js')], { cwd: ROOT, encoding: 'utf8', timeout: 120000 });
    assert.equal(r.signal, null, `child killed by ${r.signal}\n${r.stderr}`);
    const failures = r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
    assert.deepEqual(failures, []);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${cases.length} of ${cases.length} bad inputs rejected as expected`));
  });

  it('the CLI refuses an unknown preset with exit code 2 and names the choices', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'train', '--model', 'densenet122'], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--model must be 'cifar' or one of densenet121, densenet161, densenet169, densenet201, densenet264, got 'densenet122'/);
  });

  it('a weight file without read permission is rejected with the path and the reason', function () {
    const isRoot = process.getuid && process.getuid() === 0;
    // root reads every file; drop the capabilities that allow it (setpriv, util-linux) for the child.
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
    if (isRoot && !setpriv) this.skip();
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'densetorch-perm-'));
    const file = path.join(dir, 'locked.safetensors');
    const script = `
      const dt = require('.');
      (async () => {
        const m = new dt.DenseNet(${JSON.stringify(TINY)});
        await m.save(${JSON.stringify(file)});
        require('fs').chmodSync(${JSON.stringify(file)}, 0);
        try { await m.loadWeights(${JSON.stringify(file)}); console.log('loaded'); }
        catch (e) { console.log(e.name + ': ' + e.message); }
      })();`;
    const r = isRoot
      ? spawnSync(setpriv, ['--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search', process.execPath, '-e', script], { cwd: ROOT, encoding: 'utf8' })
      : runNode(script);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^WeightsError: .*locked\.safetensors.*(cannot open|Permission denied)/m);
  });
});
