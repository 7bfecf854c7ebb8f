namespace ProxySelection.Negotiation;

/// <summary>What a proxy knows about one destination.</summary>
public enum CapabilityState : byte
{
    /// <summary>The probe's SYN/ACK carried MP_CAPABLE and no defer: the server (or something acting for it) speaks MPTCP.</summary>
    MptcpCapable = 1,

    /// <summary>A proxy further on (<see cref="CapabilityEntry.ProxyId"/>) defers this proxy: it acts instead.</summary>
    ProxyBeyond,

    /// <summary>The probe's SYN/ACK had no MP_CAPABLE: nothing beyond speaks MPTCP.</summary>
    TcpOnly,

    /// <summary>Negative entry: the probe timed out or was reset. Pass untouched, do not probe again meanwhile.</summary>
    Unresolved,

    /// <summary>Another proxy's probe for this destination passed through here recently: pass, do not hold again.</summary>
    ProbedByOther,
}

/// <summary>Where an entry came from; a fact learnt from an observed segment lives shorter (spec §6).</summary>
public enum CapabilitySource : byte
{
    /// <summary>This proxy's own probe (its answer, timeout or reset), or set by an operator or a test.</summary>
    OwnProbe,

    /// <summary>
    /// A segment that passed through: a SYN/ACK answering another proxy's probe (spec §7.6, lifetime
    /// <see cref="CapabilityCacheOptions.ObservedTtl"/>), or that probe itself (ProbedByOther).
    /// </summary>
    Observed,
}

/// <summary>
/// One destination's entry. <see cref="IngressInterface"/> is meaningful for <see cref="CapabilityState.ProbedByOther"/>
/// only: the interface the other proxy's probe arrived on (spec §6).
/// </summary>
public readonly record struct CapabilityEntry(
    CapabilityState State,
    byte ProxyId,
    CapabilitySource Source = CapabilitySource.OwnProbe,
    int IngressInterface = 0)
{
    /// <summary>
    /// A server fact (MptcpCapable, TcpOnly) from a single own probe, not yet confirmed by the next one (spec §6): it
    /// lives <see cref="CapabilityCacheOptions.ObservedTtl"/>, since an on-path party could have forged that one answer.
    /// </summary>
    public bool Provisional { get; init; }

    /// <summary>MptcpCapable or TcpOnly: what the server speaks, the facts a probe answer's MP_CAPABLE decides.</summary>
    public bool IsServerFact => State is CapabilityState.MptcpCapable or CapabilityState.TcpOnly;
}

/// <summary>One live cache entry as an operator sees it: how long ago it was set and how long it has left.</summary>
public readonly record struct CapabilityCacheItem(DestinationKey Destination, CapabilityEntry Entry, TimeSpan Age, TimeSpan Remaining);

/// <summary>
/// Hears every change of a <see cref="CapabilityCache"/>, in order, under the cache's lock (so a copy kept elsewhere —
/// the kernel's — sees the changes in the order they were made): implementations only enqueue, never block or call
/// back into the cache. Lazy expiry is not reported: a copy given each entry's lifetime expires with it.
/// </summary>
public interface ICapabilityCacheObserver
{
    /// <summary><paramref name="key"/> now has <paramref name="entry"/> for <paramref name="lifetime"/>.</summary>
    void OnSet(in DestinationKey key, in CapabilityEntry entry, TimeSpan lifetime);

    /// <summary><paramref name="key"/>'s entry was removed or evicted before its time.</summary>
    void OnRemoved(in DestinationKey key);

    /// <summary>Every entry was removed.</summary>
    void OnCleared();
}

/// <summary>
/// Bounded destination → capability map with a lifetime per state and least-recently-used eviction.
/// Lookups and updates of existing keys do not allocate: entries live in parallel arrays linked into an
/// LRU list by index. Thread-safe (one lock); counters are exact.
/// </summary>
public sealed class CapabilityCache
{
    private const int None = -1;

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly CapabilityCacheOptions _options;
    private readonly TimeSpan _probedByOtherTtl;
    private readonly Dictionary<DestinationKey, int> _index;
    private readonly DestinationKey[] _keys;
    private readonly CapabilityEntry[] _entries;
    private readonly long[] _expiresAt;
    private readonly int[] _prev;
    private readonly int[] _next;
    private int _head = None;
    private int _tail = None;
    private int _freeHead = None;
    private int _used;
    private long _hits;
    private long _misses;
    private long _evictions;
    private long _expirations;
    private long _factsRechecked;
    private long _factsChanged;

    public CapabilityCache(CapabilityCacheOptions options, TimeProvider time, TimeSpan probedByOtherTtl)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        }

        _options = options;
        _time = time;
        _probedByOtherTtl = probedByOtherTtl;
        int size = options.MaxEntries;
        _index = new Dictionary<DestinationKey, int>(Math.Min(size, 4096));
        _keys = new DestinationKey[size];
        _entries = new CapabilityEntry[size];
        _expiresAt = new long[size];
        _prev = new int[size];
        _next = new int[size];
    }

    public int Capacity => _keys.Length;

    /// <summary>Hears every change from now on (one observer; null: none). Set it before the cache is used.</summary>
    public ICapabilityCacheObserver? Observer { get; set; }

    public int Count
    {
        get { lock (_lock) { return _index.Count; } }
    }

    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    public long Evictions => Interlocked.Read(ref _evictions);

    public long Expirations => Interlocked.Read(ref _expirations);

    /// <summary>Own probes that re-checked an earlier own server fact for the destination (<see cref="SetOwnProbeResult"/>).</summary>
    public long FactsRechecked => Interlocked.Read(ref _factsRechecked);

    /// <summary>Of <see cref="FactsRechecked"/>, those whose answer disagreed: the fact was replaced and stays provisional.</summary>
    public long FactsChanged => Interlocked.Read(ref _factsChanged);

    /// <summary>Looks the destination up; an expired entry is removed and counts as a miss.</summary>
    public bool TryGet(in DestinationKey key, out CapabilityEntry entry) => TryGet(key, out entry, out _);

    /// <summary>
    /// Looks the destination up; an expired entry is removed, counts as a miss and is returned as
    /// <paramref name="expired"/> (default when there was none), so the probe that follows can re-check it.
    /// </summary>
    public bool TryGet(in DestinationKey key, out CapabilityEntry entry, out CapabilityEntry expired)
    {
        lock (_lock)
        {
            expired = default;
            if (_index.TryGetValue(key, out int slot))
            {
                if (_time.GetTimestamp() < _expiresAt[slot])
                {
                    MoveToFrontLocked(slot);
                    entry = _entries[slot];
                    _hits++;
                    return true;
                }

                expired = _entries[slot];
                RemoveLocked(slot);
                _expirations++;
            }

            _misses++;
            entry = default;
            return false;
        }
    }

    /// <summary>
    /// Records what this proxy's own probe found (spec §6). A server fact that agrees with the destination's previous own
    /// server fact (<paramref name="previous"/>, live or just expired) is confirmed and gets its state's full life; any
    /// other server fact — the first, or one that disagrees — is provisional and lives
    /// <see cref="CapabilityCacheOptions.ObservedTtl"/>, so a forged answer to one probe is re-checked by the next.
    /// Other states are written as <see cref="Set(in DestinationKey, CapabilityState, byte)"/> does.
    /// </summary>
    public void SetOwnProbeResult(in DestinationKey key, CapabilityState state, byte proxyId, in CapabilityEntry previous)
    {
        var entry = new CapabilityEntry(state, proxyId);
        if (entry.IsServerFact)
        {
            bool recheck = previous.IsServerFact && previous.Source == CapabilitySource.OwnProbe;
            bool agrees = recheck && previous.State == state;
            if (recheck)
            {
                Interlocked.Increment(ref _factsRechecked);
                if (!agrees)
                {
                    Interlocked.Increment(ref _factsChanged);
                }
            }

            entry = entry with { Provisional = !agrees };
        }

        Set(key, entry);
    }

    /// <summary>Reads without counting, refreshing recency or expiring (for observers and tests).</summary>
    public bool TryPeek(in DestinationKey key, out CapabilityEntry entry)
    {
        lock (_lock)
        {
            if (_index.TryGetValue(key, out int slot) && _time.GetTimestamp() < _expiresAt[slot])
            {
                entry = _entries[slot];
                return true;
            }

            entry = default;
            return false;
        }
    }

    /// <summary>Records a state from this proxy's own probe with the lifetime configured for it; evicts the least recently used entry when full.</summary>
    public void Set(in DestinationKey key, CapabilityState state, byte proxyId = 0) =>
        Set(key, new CapabilityEntry(state, proxyId));

    /// <summary>Records an entry with the lifetime of its state and source (<see cref="TtlOf(in CapabilityEntry)"/>).</summary>
    public void Set(in DestinationKey key, in CapabilityEntry entry)
    {
        var lifetime = TtlOf(entry);
        long expiresAt = _time.GetTimestamp() + ToTimestampTicks(lifetime);
        lock (_lock)
        {
            if (!_index.TryGetValue(key, out int slot))
            {
                slot = AllocateLocked();
                _keys[slot] = key;
                _index.Add(key, slot);
                LinkFrontLocked(slot);
            }
            else
            {
                MoveToFrontLocked(slot);
            }

            _entries[slot] = entry;
            _expiresAt[slot] = expiresAt;
            Observer?.OnSet(key, entry, lifetime);
        }
    }

    public bool Remove(in DestinationKey key)
    {
        lock (_lock)
        {
            if (!_index.TryGetValue(key, out int slot))
            {
                return false;
            }

            RemoveLocked(slot);
            Observer?.OnRemoved(key);
            return true;
        }
    }

    /// <summary>
    /// The live entries, most recently used first, without counting, refreshing or expiring them (for the control
    /// socket). Age is the state's lifetime minus what is left of it: an entry is only ever set with its full lifetime.
    /// </summary>
    public IReadOnlyList<CapabilityCacheItem> Snapshot()
    {
        var items = new List<CapabilityCacheItem>();
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            for (int slot = _head; slot != None; slot = _next[slot])
            {
                if (now >= _expiresAt[slot])
                {
                    continue;
                }

                var entry = _entries[slot];
                var remaining = TimeSpan.FromSeconds((double)(_expiresAt[slot] - now) / _time.TimestampFrequency);
                var age = TtlOf(entry) - remaining;
                items.Add(new CapabilityCacheItem(_keys[slot], entry, age < TimeSpan.Zero ? TimeSpan.Zero : age, remaining));
            }
        }

        return items;
    }

    /// <summary>Removes every entry (an operator's flush); the hit, miss, eviction and expiry counters stay. Returns how many went.</summary>
    public int Clear()
    {
        lock (_lock)
        {
            int removed = _index.Count;
            _index.Clear();
            Array.Clear(_keys);
            _head = None;
            _tail = None;
            _freeHead = None;
            _used = 0;
            Observer?.OnCleared();
            return removed;
        }
    }

    /// <summary>
    /// The lifetime an entry gets: a fact (MptcpCapable, TcpOnly, ProxyBeyond) learnt from an observed SYN/ACK, and a
    /// provisional server fact from a single own probe, live <see cref="CapabilityCacheOptions.ObservedTtl"/> (an
    /// on-path party could have forged the one answer, spec §6); everything else lives as its state says.
    /// </summary>
    public TimeSpan TtlOf(in CapabilityEntry entry) =>
        (entry.Source == CapabilitySource.Observed && entry.State is CapabilityState.MptcpCapable or CapabilityState.TcpOnly or CapabilityState.ProxyBeyond)
            || (entry.Provisional && entry.IsServerFact)
            ? _options.ObservedTtl
            : TtlOf(entry.State);

    public TimeSpan TtlOf(CapabilityState state) => state switch
    {
        CapabilityState.MptcpCapable => _options.MptcpCapableTtl,
        CapabilityState.ProxyBeyond => _options.ProxyBeyondTtl,
        CapabilityState.TcpOnly => _options.TcpOnlyTtl,
        CapabilityState.Unresolved => _options.UnresolvedTtl,
        CapabilityState.ProbedByOther => _probedByOtherTtl,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "Unknown capability state."),
    };

    private long ToTimestampTicks(TimeSpan span) =>
        (long)(span.TotalSeconds * _time.TimestampFrequency);

    private int AllocateLocked()
    {
        if (_freeHead != None)
        {
            int slot = _freeHead;
            _freeHead = _next[slot];
            return slot;
        }

        if (_used < _keys.Length)
        {
            return _used++;
        }

        // Full: the least recently used entry goes.
        int victim = _tail;
        var victimKey = _keys[victim];
        bool live = _time.GetTimestamp() < _expiresAt[victim];
        RemoveLocked(victim);
        if (live)
        {
            Observer?.OnRemoved(victimKey);
        }

        _evictions++;
        int reused = _freeHead;
        _freeHead = _next[reused];
        return reused;
    }

    private void RemoveLocked(int slot)
    {
        _index.Remove(_keys[slot]);
        UnlinkLocked(slot);
        _keys[slot] = default;
        _next[slot] = _freeHead;
        _freeHead = slot;
    }

    private void MoveToFrontLocked(int slot)
    {
        if (_head == slot)
        {
            return;
        }

        UnlinkLocked(slot);
        LinkFrontLocked(slot);
    }

    private void LinkFrontLocked(int slot)
    {
        _prev[slot] = None;
        _next[slot] = _head;
        if (_head != None)
        {
            _prev[_head] = slot;
        }

        _head = slot;
        if (_tail == None)
        {
            _tail = slot;
        }
    }

    private void UnlinkLocked(int slot)
    {
        int prev = _prev[slot];
        int next = _next[slot];
        if (prev != None)
        {
            _next[prev] = next;
        }
        else
        {
            _head = next;
        }

        if (next != None)
        {
            _prev[next] = prev;
        }
        else
        {
            _tail = prev;
        }
    }
}
