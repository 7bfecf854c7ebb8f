using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Engine.Fronts;

/// <summary>Why <see cref="SourceLimits.TryEnter"/> turned a client away.</summary>
public enum SourceRefusal
{
    None,

    /// <summary>Clients in their handshake, all sources together, at the global bound.</summary>
    Handshakes,

    /// <summary>This source's clients in their handshake at its bound.</summary>
    SourceHandshakes,

    /// <summary>This source's connections (in the handshake, connecting or relayed) at its bound.</summary>
    SourceConnections,
}

/// <summary>
/// The host-configured fronts' admission before a byte is read (issue 12): a global bound on clients in their
/// handshake (both fronts together) and, per source, a bound on its clients in the handshake and on all its front
/// connections. One source holding idle connections fills its own share, not the global bound: clients from other
/// sources keep being served.
/// </summary>
/// <remarks>
/// A source is an IPv4 address (/32) or an IPv6 /64: one host holds a whole /64 (SLAAC, privacy addresses), so a
/// bound per /128 would not bound it; a /64 is still no wider than one link, where a /56 or a /24 would lump a site's
/// or a provider's unrelated clients (behind CGNAT an IPv4 address already stands for many) under one bound.
/// </remarks>
public sealed class SourceLimits
{
    private readonly Lock _lock = new();
    private readonly Dictionary<UInt128, Counts> _sources = [];
    private int _handshakes;

    public SourceLimits(int maxHandshakes, int maxHandshakesPerSource, int maxConnectionsPerSource)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxHandshakes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxHandshakesPerSource, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnectionsPerSource, 1);
        MaxHandshakes = maxHandshakes;
        MaxHandshakesPerSource = Math.Min(maxHandshakesPerSource, maxHandshakes);
        MaxConnectionsPerSource = maxConnectionsPerSource;
    }

    public int MaxHandshakes { get; }

    public int MaxHandshakesPerSource { get; }

    public int MaxConnectionsPerSource { get; }

    /// <summary>Clients in their handshake now, all sources together.</summary>
    public int Handshakes
    {
        get
        {
            lock (_lock)
            {
                return _handshakes;
            }
        }
    }

    /// <summary>
    /// The global handshake bound for a connection limit: a tenth of it, at least 16, at most 256.
    /// </summary>
    public static int MaxHandshakesFor(int capacity) => Math.Min(256, Math.Max(16, capacity / 10));

    /// <summary>The source key of an address: IPv4 (v4-mapped too) whole, IPv6 its /64.</summary>
    public static UInt128 SourceOf(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        Span<byte> bytes = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            // Kept apart from any IPv6 /64 by a marker above the 32 bits.
            address.TryWriteBytes(bytes[12..], out _);
            bytes[11] = 0xFF;
            bytes[10] = 0xFF;
            bytes[0] = 0x01;
        }
        else
        {
            address.TryWriteBytes(bytes, out _);
            bytes[8..].Clear();
        }

        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
    }

    /// <summary>
    /// A slot for a client of <paramref name="source"/> in its handshake, or the bound that refused it (the slot is
    /// then null). The slot counts the connection until it is disposed, the handshake until <see cref="SourceSlot.EndHandshake"/>.
    /// </summary>
    public SourceRefusal TryEnter(IPAddress? source, out SourceSlot? slot)
    {
        slot = null;
        // A socket already gone has no address: the global bound alone applies (keyed apart from every real source).
        var key = source is null ? UInt128.MaxValue : SourceOf(source);
        lock (_lock)
        {
            if (_handshakes >= MaxHandshakes)
            {
                return SourceRefusal.Handshakes;
            }

            _sources.TryGetValue(key, out var counts);
            if (counts.Handshakes >= MaxHandshakesPerSource)
            {
                return SourceRefusal.SourceHandshakes;
            }

            if (counts.Connections >= MaxConnectionsPerSource)
            {
                return SourceRefusal.SourceConnections;
            }

            _handshakes++;
            _sources[key] = new Counts(counts.Handshakes + 1, counts.Connections + 1);
        }

        slot = new SourceSlot(this, key);
        return SourceRefusal.None;
    }

    /// <summary>This source's (handshakes, connections) now; zeros for a source without any.</summary>
    public (int Handshakes, int Connections) CountsOf(IPAddress source)
    {
        lock (_lock)
        {
            return _sources.TryGetValue(SourceOf(source), out var counts) ? (counts.Handshakes, counts.Connections) : (0, 0);
        }
    }

    private void Release(UInt128 key, bool handshake, bool connection)
    {
        lock (_lock)
        {
            var counts = _sources[key];
            if (handshake)
            {
                _handshakes--;
                counts = counts with { Handshakes = counts.Handshakes - 1 };
            }

            if (connection)
            {
                counts = counts with { Connections = counts.Connections - 1 };
            }

            if (counts.Connections == 0)
            {
                // Nothing kept for a source without connections: the table grows with connections, not with sources seen.
                _sources.Remove(key);
            }
            else
            {
                _sources[key] = counts;
            }
        }
    }

    private readonly record struct Counts(int Handshakes, int Connections);

    /// <summary>One front connection's place in the bounds; both ends are safe to call twice.</summary>
    public sealed class SourceSlot : IDisposable
    {
        private readonly SourceLimits _limits;
        private readonly UInt128 _key;
        private int _handshake = 1;
        private int _connection = 1;

        internal SourceSlot(SourceLimits limits, UInt128 key)
        {
            _limits = limits;
            _key = key;
        }

        /// <summary>The handshake is over (complete or failed): its slot goes, the connection's stays until disposed.</summary>
        public void EndHandshake()
        {
            if (Interlocked.Exchange(ref _handshake, 0) == 1)
            {
                _limits.Release(_key, handshake: true, connection: false);
            }
        }

        public void Dispose()
        {
            bool handshake = Interlocked.Exchange(ref _handshake, 0) == 1;
            if (Interlocked.Exchange(ref _connection, 0) == 1 || handshake)
            {
                _limits.Release(_key, handshake, connection: true);
            }
        }
    }
}
