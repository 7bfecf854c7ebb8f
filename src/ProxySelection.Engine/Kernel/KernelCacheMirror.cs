using System.Globalization;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Rules;
using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Kernel;

/// <summary>
/// Keeps the kernel fast path's sets (<see cref="IpSetNames.KnownMptcp"/>, <see cref="IpSetNames.KnownTcpOnly"/>) in
/// step with the capability cache, which stays the one truth: every change the cache reports is queued (in the cache's
/// order) and written by one consumer through <c>ipset -exist restore</c>, each entry with the cache entry's lifetime
/// (whole seconds, rounded down: the kernel copy never outlives it). A downgrading proxy's verdicts that depend on the
/// destination alone: MptcpCapable, ProxyBeyond and Unresolved pass; TcpOnly is intercepted. ProbedByOther depends
/// on the ingress interface and stays with the queue. If the queue of changes overflows or a write fails, the sets
/// are emptied and refilled from the cache (an entry missing from the kernel only costs a queue trip).
/// </summary>
public sealed class KernelCacheMirror : ICapabilityCacheObserver, IAsyncDisposable
{
    private const int MaxPending = 4096;

    private readonly string _prefix;
    private readonly bool _pass;
    private volatile bool _intercept;
    private readonly bool[] _families;
    private readonly CapabilityCache _cache;
    private readonly ICommandRunner _runner;
    private readonly ILogger _log;
    private readonly Channel<Change> _changes = Channel.CreateBounded<Change>(new BoundedChannelOptions(MaxPending)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });
    private readonly Task _writer;
    private readonly Task _counterReader;
    private readonly ProxyCounters _counters;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private int _resync;
    private long _writes;

    /// <summary>How often the rules' counters are read into <see cref="ProxyCounters"/>.</summary>
    public static readonly TimeSpan CounterInterval = TimeSpan.FromSeconds(5);

    public KernelCacheMirror(InterceptionRulesetOptions rules, CapabilityCache cache, ICommandRunner runner, ILogger log,
        ProxyCounters counters, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(counters);
        ArgumentNullException.ThrowIfNull(time);
        _counters = counters;
        _time = time;
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(runner);
        ArgumentNullException.ThrowIfNull(log);
        _prefix = rules.ChainPrefix;
        _pass = rules.FastPathPass;
        _intercept = rules.FastPathIntercept;
        _families = [.. new[] { false, true }.Where(v6 => v6 ? rules.IPv6 : rules.IPv4)];
        _cache = cache;
        _runner = runner;
        _log = log;
        _writer = WriteLoopAsync();
        _counterReader = ReadCountersLoopAsync();
    }

    /// <summary>
    /// A drain began: the kernel must not claim new connections either. The intercept entries go (the sets are refilled
    /// with the pass entries alone); the queue then passes new SYNs as draining.
    /// </summary>
    public void StopIntercepting()
    {
        if (_intercept)
        {
            _intercept = false;
            Resync();
        }
    }

    /// <summary>Empties the sets and refills them from the cache (at start, when the cache may hold entries already).</summary>
    public void Resync()
    {
        Volatile.Write(ref _resync, 1);
        _changes.Writer.TryWrite(new Change(default, Target.None, 0, true));
    }

    /// <summary>
    /// Whether the kernel may be intercepting connections toward <paramref name="destination"/> right now: it keeps no
    /// flow record for them, so a join toward it with a token not yet registered must wait for the accept, as it would
    /// beside a flow awaiting its accept.
    /// </summary>
    public bool InterceptsToward(System.Net.IPEndPoint destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        return _intercept && _cache.TryPeek(DestinationKey.From(destination), out var entry) && entry.State == CapabilityState.TcpOnly;
    }

    /// <summary>ipset restore runs so far (tests, diagnostics).</summary>
    public long Writes => Interlocked.Read(ref _writes);

    private enum Target : byte
    {
        None,
        Pass,
        Intercept,
    }

    private readonly record struct Change(DestinationKey Key, Target Target, int Seconds, bool Clear);

    public void OnSet(in DestinationKey key, in CapabilityEntry entry, TimeSpan lifetime) => Enqueue(ToChange(key, entry, lifetime));

    private Change ToChange(in DestinationKey key, in CapabilityEntry entry, TimeSpan lifetime)
    {
        var target = entry.State switch
        {
            CapabilityState.MptcpCapable or CapabilityState.ProxyBeyond or CapabilityState.Unresolved when _pass => Target.Pass,
            CapabilityState.TcpOnly when _intercept => Target.Intercept,
            _ => Target.None,
        };
        return new Change(key, target, (int)Math.Min(int.MaxValue, Math.Floor(lifetime.TotalSeconds)), false);
    }

    public void OnRemoved(in DestinationKey key) => Enqueue(new Change(key, Target.None, 0, false));

    public void OnCleared() => Enqueue(new Change(default, Target.None, 0, true));

    private void Enqueue(Change change)
    {
        if (!_changes.Writer.TryWrite(change))
        {
            // Full (or completed): what is queued may be stale by now; start from the cache again.
            Volatile.Write(ref _resync, 1);
        }
    }

    private async Task WriteLoopAsync()
    {
        await Task.Yield();
        var script = new StringBuilder();
        while (await _changes.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            script.Clear();
            if (Interlocked.Exchange(ref _resync, 0) != 0)
            {
                while (_changes.Reader.TryRead(out _))
                {
                }

                AppendFlush(script);
                foreach (var item in _cache.Snapshot())
                {
                    // Written before anything queued from now on: a change made after the snapshot comes after it.
                    Append(script, ToChange(item.Destination, item.Entry, item.Remaining));
                }
            }

            while (script.Length < 64 * 1024 && _changes.Reader.TryRead(out var change))
            {
                Append(script, change);
            }

            if (script.Length == 0)
            {
                continue;
            }

            await WriteAsync(script.ToString()).ConfigureAwait(false);
        }
    }

    private async Task WriteAsync(string script)
    {
        try
        {
            var r = await _runner.RunAsync("ipset", ["-exist", "restore"], script, CancellationToken.None).ConfigureAwait(false);
            Interlocked.Increment(ref _writes);
            if (r.Succeeded)
            {
                return;
            }

            KernelLog.MirrorWriteFailed(_log, r.ExitCode, r.StdErr.Trim());
        }
        catch (InterceptionRulesException e)
        {
            KernelLog.MirrorWriteFailed(_log, -1, e.Message);
        }

        // A failed batch may have left part of it undone: rebuild from the cache.
        Volatile.Write(ref _resync, 1);
        _changes.Writer.TryWrite(new Change(default, Target.None, 0, true));
    }

    private void Append(StringBuilder script, Change change)
    {
        if (change.Clear)
        {
            AppendFlush(script);
            return;
        }

        bool v6 = !change.Key.IsIPv4;
        if (!_families.Contains(v6))
        {
            return;
        }

        string element = Element(change.Key);
        string mptcp = IpSetNames.KnownMptcp(_prefix, v6);
        string tcpOnly = IpSetNames.KnownTcpOnly(_prefix, v6);
        script.Append(CultureInfo.InvariantCulture, $"del {mptcp} {element}\ndel {tcpOnly} {element}\n");
        if (change.Target != Target.None && change.Seconds > 0)
        {
            script.Append(CultureInfo.InvariantCulture, $"add {(change.Target == Target.Pass ? mptcp : tcpOnly)} {element} timeout {change.Seconds}\n");
        }
    }

    private void AppendFlush(StringBuilder script)
    {
        foreach (var v6 in _families)
        {
            script.Append(CultureInfo.InvariantCulture, $"flush {IpSetNames.KnownMptcp(_prefix, v6)}\nflush {IpSetNames.KnownTcpOnly(_prefix, v6)}\n");
        }
    }

    /// <summary>ipset's <c>hash:ip,port</c> element: <c>198.18.3.2,tcp:80</c>, <c>2001:db8::2,tcp:443</c>.</summary>
    public static string Element(in DestinationKey key) =>
        string.Create(CultureInfo.InvariantCulture, $"{key.ToEndPoint().Address},tcp:{key.Port}");

    private async Task ReadCountersLoopAsync()
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(CounterInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                try
                {
                    await ReadCountersAsync().ConfigureAwait(false);
                }
                catch (InterceptionRulesException)
                {
                    // iptables did not answer in time: the next tick reads again.
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Reads the fast chain's ACCEPT rules' packet counts (<c>iptables -t raw -L PREFIX_FAST -v -x -n</c>, both families)
    /// into <see cref="ProxyCounters.SetKernelDecided"/>: the SYNs the kernel passed and intercepted.
    /// </summary>
    public async Task ReadCountersAsync()
    {
        long passed = 0, intercepted = 0;
        foreach (var v6 in _families)
        {
            var r = await _runner.RunAsync(v6 ? "ip6tables" : "iptables", ["-w", "-t", "raw", "-L", $"{_prefix}_FAST", "-v", "-x", "-n"], null,
                CancellationToken.None).ConfigureAwait(false);
            if (!r.Succeeded)
            {
                return;
            }

            foreach (var line in r.StdOut.Split('\n'))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 3 || fields[2] != "ACCEPT" || !long.TryParse(fields[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var packets))
                {
                    continue;
                }

                if (line.Contains(IpSetNames.KnownMptcp(_prefix, v6) + " ", StringComparison.Ordinal))
                {
                    passed += packets;
                }
                else if (line.Contains(IpSetNames.KnownTcpOnly(_prefix, v6) + " ", StringComparison.Ordinal))
                {
                    intercepted += packets;
                }
            }
        }

        _counters.SetKernelDecided(passed, intercepted);
    }

    /// <summary>
    /// Stops taking changes, waits for the writer (bounded) and reads the counters a last time: the rules and sets go
    /// with the ruleset, after this.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _changes.Writer.TryComplete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_writer, _counterReader).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        try
        {
            await ReadCountersAsync().ConfigureAwait(false);
        }
        catch (InterceptionRulesException)
        {
            // Counts stay as last read.
        }

        _stopping.Dispose();
    }
}

internal static partial class KernelLog
{
    [LoggerMessage(4700, LogLevel.Warning, "kernel fast path: ipset restore exited {ExitCode} ({Error}); the sets are refilled from the cache")]
    public static partial void MirrorWriteFailed(ILogger logger, int exitCode, string error);
}
