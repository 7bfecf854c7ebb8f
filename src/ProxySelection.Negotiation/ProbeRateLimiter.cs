namespace ProxySelection.Negotiation;

/// <summary>
/// Token buckets per key on an injected clock, in a bounded table (spec §7.5.1). A bucket refills at
/// <c>rate</c> tokens a second up to a burst of one second's worth (at least one token). A bucket idle long enough to
/// be full again is the same as none and is forgotten (least recently used first); when the table is full of buckets
/// that are still refilling, a new key is refused. So a flood over any number of keys keeps the table at its bound,
/// and no bucket that still limits someone is ever dropped. Not thread-safe: the negotiator's lock guards it.
/// </summary>
internal sealed class ProbeRateLimiter
{
    private readonly TimeProvider _time;
    private readonly double _tokensPerTick;
    private readonly double _burst;
    private readonly long _refillTicks;
    private readonly int _capacity;
    private readonly Dictionary<DestinationKey, LinkedListNode<Bucket>> _index = [];
    private readonly LinkedList<Bucket> _recency = []; // most recently used first

    public ProbeRateLimiter(TimeProvider time, double perSecond, int capacity)
    {
        _time = time;
        _capacity = capacity;
        _burst = Math.Max(1, perSecond);
        _tokensPerTick = perSecond / time.TimestampFrequency;
        _refillTicks = (long)Math.Ceiling(_burst / _tokensPerTick);
    }

    /// <summary>Buckets kept.</summary>
    public int Count => _index.Count;

    /// <summary>Whether <paramref name="key"/> has a token now (takes none).</summary>
    public bool HasToken(in DestinationKey key)
    {
        long now = _time.GetTimestamp();
        if (_index.TryGetValue(key, out var node))
        {
            return Refilled(node.Value, now) >= 1;
        }

        ForgetIdle(now);
        return _index.Count < _capacity;
    }

    /// <summary>Takes a token; call only after <see cref="HasToken"/> said yes, under the same lock.</summary>
    public void Take(in DestinationKey key)
    {
        long now = _time.GetTimestamp();
        if (_index.TryGetValue(key, out var node))
        {
            _recency.Remove(node);
        }
        else
        {
            node = new LinkedListNode<Bucket>(new Bucket { Key = key, Tokens = _burst, UpdatedAt = now });
            _index.Add(key, node);
        }

        var bucket = node.Value;
        bucket.Tokens = Refilled(bucket, now) - 1;
        bucket.UpdatedAt = now;
        _recency.AddFirst(node);
    }

    private double Refilled(Bucket bucket, long now) =>
        Math.Min(_burst, bucket.Tokens + ((now - bucket.UpdatedAt) * _tokensPerTick));

    private void ForgetIdle(long now)
    {
        while (_recency.Last is { } oldest && now - oldest.Value.UpdatedAt >= _refillTicks)
        {
            _recency.RemoveLast();
            _index.Remove(oldest.Value.Key);
        }
    }

    private sealed class Bucket
    {
        public DestinationKey Key { get; init; }

        public double Tokens { get; set; }

        public long UpdatedAt { get; set; }
    }
}
