import { describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/backoff.js';
import { ConfigError } from '../../protocol/index.js';
import { noProxyMatches, proxyEnvFrom, proxyFor, proxyUrlProblem, redactProxy } from '../../agent/proxy.js';

describe('Backoff (exponential, full jitter, capped)', () => {
  it('doubles the ceiling per attempt up to the cap, draws uniformly below it, and resets', () => {
    let r = 0.999999;
    const b = new Backoff({ initialMs: 1000, maxMs: 60_000, random: () => r });
    const top = Array.from({ length: 10 }, () => b.next());
    expect(top).toEqual([999, 1999, 3999, 7999, 15_999, 31_999, 59_999, 59_999, 59_999, 59_999]);
    expect(b.attempt).toBe(10);
    r = 0;
    expect(b.next()).toBe(0); // full jitter: the whole range down to 0
    r = 0.5;
    b.reset();
    expect([b.next(), b.next(), b.next()]).toEqual([500, 1000, 2000]);
  });

  it('keeps going forever without overflow, never above the cap', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 5000 });
    let max = 0;
    let min = Infinity;
    for (let i = 0; i < 5000; i++) {
      const d = b.next();
      min = Math.min(min, d);
      max = Math.max(max, d);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(5000);
    expect(max).toBeGreaterThan(4000); // the cap is reached: the draws spread up to it
    expect(b.ceiling()).toBe(5000);
  });

  it('refuses a nonsense schedule', () => {
    expect(() => new Backoff({ initialMs: 0, maxMs: 10 })).toThrow(RangeError);
    expect(() => new Backoff({ initialMs: 100, maxMs: 10 })).toThrow(RangeError);
  });
});

describe('proxy selection', () => {
  const hub = new URL('wss://hub.example.com:8443/mqtt');

  it('reads HTTPS_PROXY/NO_PROXY (upper case first), ignores blanks', () => {
    expect(proxyEnvFrom({ HTTPS_PROXY: 'http://p:3128', https_proxy: 'http://q:1', no_proxy: 'a' })).toEqual({ httpsProxy: 'http://p:3128', httpsProxyVar: 'HTTPS_PROXY', noProxy: 'a' });
    expect(proxyEnvFrom({ https_proxy: 'q:1' })).toEqual({ httpsProxy: 'q:1', httpsProxyVar: 'https_proxy' });
    expect(proxyEnvFrom({ HTTPS_PROXY: ' ' })).toEqual({ httpsProxy: undefined, noProxy: undefined });
  });

  it('the config wins over the environment; "none" turns it off; NO_PROXY applies to the environment', () => {
    const env = { httpsProxy: 'http://env:3128', noProxy: 'example.com' };
    expect(proxyFor(hub, 'http://cfg:8080', env)).toBe('http://cfg:8080');
    expect(proxyFor(hub, 'none', env)).toBeUndefined();
    expect(proxyFor(hub, undefined, env)).toBeUndefined();
    expect(proxyFor(hub, undefined, { httpsProxy: 'http://env:3128', noProxy: 'other.org' })).toBe('http://env:3128');
    expect(proxyFor(hub, undefined, {})).toBeUndefined();
  });

  it('NO_PROXY: names, sub-domains, leading dots and *., ports, *', () => {
    const m = (s: string, u = hub): boolean => noProxyMatches(u, s);
    expect(m('hub.example.com')).toBe(true);
    expect(m('.example.com')).toBe(true);
    expect(m('*.example.com')).toBe(true);
    expect(m('example.com')).toBe(true);
    expect(m('ample.com')).toBe(false);
    expect(m('hub.example.com:8443')).toBe(true);
    expect(m('hub.example.com:443')).toBe(false);
    expect(m('foo, *')).toBe(true);
    expect(m('127.0.0.1', new URL('wss://127.0.0.1:1/'))).toBe(true);
    expect(m('::1', new URL('wss://[::1]:1/'))).toBe(true);
    expect(m('localhost', new URL('wss://127.0.0.1/'))).toBe(false); // names are not resolved
  });

  it('proxy URLs: http://HOST:PORT only; logs never carry credentials', () => {
    expect(proxyUrlProblem('http://proxy:3128')).toBeNull();
    expect(proxyUrlProblem('https://proxy:3128')).toMatch(/scheme/);
    expect(proxyUrlProblem('http://proxy:3128/x')).toMatch(/path/);
    expect(proxyUrlProblem('nonsense')).toMatch(/URL/);
    expect(redactProxy('http://user:secret@proxy:3128')).toBe('http://proxy:3128');
  });

  it('HTTPS_PROXY: no scheme means http:// (as curl), anything else unusable throws a ConfigError naming the variable; redactProxy never says "null"', () => {
    const use = (v: string, name?: string): string | undefined => proxyFor(hub, undefined, { httpsProxy: v, ...(name ? { httpsProxyVar: name } : {}) });
    expect(use('127.0.0.1:3128')).toBe('http://127.0.0.1:3128');
    expect(use('u:p@proxy:3128')).toBe('http://u:p@proxy:3128');
    expect(use('HTTP://proxy:3128')).toBe('HTTP://proxy:3128');
    for (const v of ['127.0.0.1:3128', 'u:p@proxy:3128', 'proxy', 'HTTP://proxy:3128']) {
      expect(redactProxy(use(v)!)).toMatch(/^http:\/\/proxy(:3128)?$|^http:\/\/127\.0\.0\.1:3128$/);
    }
    expect(() => use('socks5://u:p@proxy:1080')).toThrow(ConfigError);
    expect(() => use('socks5://u:p@proxy:1080')).toThrow(/^HTTPS_PROXY: scheme must be http: \(got socks5:\)/);
    expect(() => use('https://proxy:3128', 'https_proxy')).toThrow(/^https_proxy: scheme must be http: \(got https:/);
    // Not used (NO_PROXY names the hub, or the config decides): not judged.
    expect(proxyFor(hub, undefined, { httpsProxy: 'socks5://p:1', noProxy: 'example.com' })).toBeUndefined();
    expect(proxyFor(hub, 'none', { httpsProxy: 'socks5://p:1' })).toBeUndefined();
  });
});
