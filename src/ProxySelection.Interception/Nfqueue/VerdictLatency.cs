using System.Globalization;
using System.Numerics;

namespace ProxySelection.Interception.Nfqueue;

/// <summary>
/// A lock-free latency histogram: log-linear buckets (8 per power of two, so a percentile is within 9 % of the true
/// value) from 1 µs to about 70 min; recording is one Interlocked.Increment, no allocation, safe from any thread.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBuckets = 8;
    private const int Powers = 32;
    private readonly long[] _counts = new long[Powers * SubBuckets];
    private long _count;
    private long _maxMicroseconds;

    /// <summary>Samples recorded.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>The largest sample, in microseconds.</summary>
    public long MaxMicroseconds => Interlocked.Read(ref _maxMicroseconds);

    public void Record(TimeSpan elapsed) => RecordMicroseconds(elapsed.Ticks / TimeSpan.TicksPerMicrosecond);

    public void RecordMicroseconds(long microseconds)
    {
        microseconds = Math.Max(0, microseconds);
        Interlocked.Increment(ref _counts[BucketOf(microseconds)]);
        Interlocked.Increment(ref _count);
        long seen = Interlocked.Read(ref _maxMicroseconds);
        while (microseconds > seen)
        {
            long previous = Interlocked.CompareExchange(ref _maxMicroseconds, microseconds, seen);
            if (previous == seen)
            {
                break;
            }
            seen = previous;
        }
    }

    /// <summary>The upper bound (µs) of the bucket holding the <paramref name="percentile"/>-th sample (0–100); 0 when empty.</summary>
    public long PercentileMicroseconds(double percentile)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(percentile, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percentile, 100);
        long total = Count;
        if (total == 0)
        {
            return 0;
        }
        long rank = Math.Max(1, (long)Math.Ceiling(total * percentile / 100));
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += Interlocked.Read(ref _counts[i]);
            if (seen >= rank)
            {
                return Math.Min(UpperBound(i), MaxMicroseconds);
            }
        }
        return MaxMicroseconds;
    }

    /// <summary><c>n=… p50_us=… p90_us=… p99_us=… max_us=…</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"n={Count} p50_us={PercentileMicroseconds(50)} p90_us={PercentileMicroseconds(90)} p99_us={PercentileMicroseconds(99)} max_us={MaxMicroseconds}");

    // Values below SubBuckets get a bucket each; above, 8 linear buckets per power of two.
    private static int BucketOf(long microseconds)
    {
        if (microseconds < SubBuckets)
        {
            return (int)microseconds;
        }
        int power = BitOperations.Log2((ulong)microseconds); // ≥ 3
        int sub = (int)((microseconds >> (power - 3)) & (SubBuckets - 1));
        int index = ((power - 2) * SubBuckets) + sub;
        return Math.Min(index, (Powers * SubBuckets) - 1);
    }

    private static long UpperBound(int bucket)
    {
        if (bucket < SubBuckets)
        {
            return bucket;
        }
        int power = (bucket / SubBuckets) + 2;
        int sub = bucket % SubBuckets;
        return ((SubBuckets + sub + 1L) << (power - 3)) - 1;
    }
}

/// <summary>
/// Time from the moment a batch of queued packets reached user space (recvmmsg returned) to each packet's verdict,
/// at the ingress hooks (not POSTROUTING). <see cref="Immediate"/>: verdicts sent while the handler ran (decided at
/// once: a pass, a cached intercept, a SYN/ACK); <see cref="Deferred"/>: packets the handler kept and decided later (a
/// SYN held while a probe is out, the cache miss; and an MP_JOIN SYN that arrived before its connection's accept named
/// the token, which in a bench of held connections is most of them). The kernel's queueing time before the wakeup is not
/// included.
/// </summary>
public sealed class VerdictLatency(TimeProvider time)
{
    /// <summary>Deferred packets remembered at most; when full, those deferred longer than <see cref="StaleAfter"/> are forgotten.</summary>
    public const int MaxPending = 4096;

    /// <summary>How long a deferred packet's entry is kept when the table is full.</summary>
    public static readonly TimeSpan StaleAfter = TimeSpan.FromSeconds(10);

    private readonly Lock _pendingLock = new();
    private readonly Dictionary<uint, long> _pending = [];
    private int _pendingCount;

    public LatencyHistogram Immediate { get; } = new();

    public LatencyHistogram Deferred { get; } = new();

    /// <summary>One line for the daemon's log: <c>proxysel: syn decision latency immediate n=… …; held n=… …</c>.</summary>
    public override string ToString() => $"proxysel: syn decision latency immediate {Immediate}; held {Deferred}";

    /// <summary>Packets deferred and not yet decided (bounded by <see cref="MaxPending"/>).</summary>
    public int Pending => Volatile.Read(ref _pendingCount);

    internal void Defer(uint packetId, long receivedAt)
    {
        lock (_pendingLock)
        {
            if (_pending.Count >= MaxPending)
            {
                ForgetStale(receivedAt);
            }

            if (_pending.Count < MaxPending)
            {
                _pending[packetId] = receivedAt;
            }

            _pendingCount = _pending.Count;
        }
    }

    /// <summary>A verdict sent outside the handler: records it if the packet was deferred.</summary>
    internal void OnLateVerdict(uint packetId, long now)
    {
        if (Volatile.Read(ref _pendingCount) == 0)
        {
            return;
        }
        long receivedAt;
        lock (_pendingLock)
        {
            if (!_pending.Remove(packetId, out receivedAt))
            {
                return;
            }
            _pendingCount = _pending.Count;
        }
        Deferred.Record(time.GetElapsedTime(receivedAt, now));
    }

    // A deferred packet whose verdict never comes through OnLateVerdict (accepted in a batch at close, or its entry
    // outlived a queue restart) would otherwise hold its slot for ever, and once the table is full no held decision
    // would be timed again. No SYN is held anywhere near StaleAfter (a client gives up on MPTCP after two lost SYNs).
    private void ForgetStale(long now)
    {
        List<uint>? stale = null;
        foreach (var (id, receivedAt) in _pending)
        {
            if (time.GetElapsedTime(receivedAt, now) >= StaleAfter)
            {
                (stale ??= []).Add(id);
            }
        }

        foreach (var id in stale ?? [])
        {
            _pending.Remove(id);
        }
    }
}
