using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Lab.Hostile;

/// <summary>
/// What one hostile TCP segment looks like: addresses drawn from prefixes (a /32 or /128 is one fixed address), ports
/// and sequence numbers fixed or random, flags, and the option bytes (<see cref="HostileOptions"/>). <see cref="Write"/>
/// draws one instance and writes the IP packet with both checksums filled, ready for a raw socket.
/// </summary>
public sealed record HostileSegment
{
    /// <summary>The source address, or the base of the spoofed source prefix.</summary>
    public required IPAddress Source { get; init; }

    /// <summary>Bits of <see cref="Source"/> kept; the rest are random per segment. Default: the whole address.</summary>
    public int SourcePrefixLength { get; init; } = -1;

    public required IPAddress Destination { get; init; }

    /// <summary>Bits of <see cref="Destination"/> kept (many destinations: cache misses). Default: the whole address.</summary>
    public int DestinationPrefixLength { get; init; } = -1;

    /// <summary>Null: random within <see cref="SourcePortRange"/> per segment.</summary>
    public ushort? SourcePort { get; init; }

    /// <summary>Where random source ports come from (inclusive); below 32768 keeps clear of a Linux host's own ephemeral ports.</summary>
    public (ushort Min, ushort Max) SourcePortRange { get; init; } = (1024, 65535);

    public ushort DestinationPort { get; init; } = 80;

    /// <summary>When set, destination ports are random within it (inclusive) instead of <see cref="DestinationPort"/>: a blind injector's guess at a probe's port.</summary>
    public (ushort Min, ushort Max)? DestinationPortRange { get; init; }

    public TcpFlags Flags { get; init; } = TcpFlags.Syn;

    /// <summary>Null: random per segment.</summary>
    public uint? Sequence { get; init; }

    /// <summary>Null with ACK set: random per segment (a blind injector's guess). Ignored without ACK.</summary>
    public uint? Acknowledgment { get; init; }

    /// <summary>The option area, a multiple of 4 bytes (at most 40).</summary>
    public byte[] Options { get; init; } = [];

    public bool IsIPv6 => Destination.AddressFamily == AddressFamily.InterNetworkV6;

    /// <summary>IP + TCP header + options; no payload.</summary>
    public int PacketLength => (IsIPv6 ? 40 : 20) + TcpHeader.MinLength + Options.Length;

    /// <summary>An MP_CAPABLE SYN (with MSS) from <paramref name="source"/> to <paramref name="destination"/>:80, random port and ISN.</summary>
    public static HostileSegment MpCapableSyn(IPAddress source, IPAddress destination) => new()
    {
        Source = source,
        Destination = destination,
        Options = HostileOptions.Concat(HostileOptions.Mss(), HostileOptions.MpCapableSyn()),
    };

    /// <summary>
    /// The flow (client → server) of this segment when every field is fixed, for signing an MP_PROXY that verifies (a SYN; a
    /// SYN/ACK's flow is the reverse, see <see cref="MpProxyFlow.WithSynAck"/>).
    /// </summary>
    public MpProxyFlow SynFlow() =>
        SourcePort is { } port && Sequence is { } isn && SourcePrefixLength == -1 && DestinationPrefixLength == -1
            ? MpProxyFlow.ForSyn(Source, Destination, port, DestinationPort, isn)
            : throw new InvalidOperationException("a signed option needs fixed addresses, source port and sequence number");

    /// <summary>Draws one segment from <paramref name="random"/> into <paramref name="packet"/> (at least <see cref="PacketLength"/>); returns its length.</summary>
    public int Write(Span<byte> packet, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        Validate();
        int ipHeader = IsIPv6 ? 40 : 20;
        int tcpLength = TcpHeader.MinLength + Options.Length;
        packet = packet[..PacketLength];
        packet.Clear();
        if (IsIPv6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet[4..], (ushort)tcpLength);
            packet[6] = IpPacket.ProtocolTcp;
            packet[7] = 64;
            Draw(Source, SourcePrefixLength, random, packet.Slice(8, 16));
            Draw(Destination, DestinationPrefixLength, random, packet.Slice(24, 16));
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet[2..], (ushort)(20 + tcpLength));
            BinaryPrimitives.WriteUInt16BigEndian(packet[4..], (ushort)random.Next(1 << 16));
            packet[6] = 0x40; // DF
            packet[8] = 64;
            packet[9] = IpPacket.ProtocolTcp;
            Draw(Source, SourcePrefixLength, random, packet.Slice(12, 4));
            Draw(Destination, DestinationPrefixLength, random, packet.Slice(16, 4));
        }

        var tcp = packet[ipHeader..];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, SourcePort ?? (ushort)random.Next(SourcePortRange.Min, SourcePortRange.Max + 1));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], DestinationPortRange is { } range ? (ushort)random.Next(range.Min, range.Max + 1) : DestinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], Sequence ?? (uint)random.NextInt64(1L << 32));
        uint ack = (Flags & TcpFlags.Ack) != 0 ? Acknowledgment ?? (uint)random.NextInt64(1L << 32) : 0;
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], ack);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], (ushort)(((tcpLength / 4) << 12) | (int)Flags));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        Options.CopyTo(tcp[TcpHeader.MinLength..]);
        var filled = InternetChecksum.TryFillChecksums(packet);
        return filled == WireError.None ? packet.Length : throw new LabException($"checksums of a hostile segment: {filled}");
    }

    /// <summary>One drawn segment as a new array.</summary>
    public byte[] ToArray(Random random)
    {
        var packet = new byte[PacketLength];
        Write(packet, random);
        return packet;
    }

    private void Validate()
    {
        if (Source.AddressFamily != Destination.AddressFamily)
        {
            throw new ArgumentException("source and destination must be of one family");
        }

        if (Options.Length % 4 != 0 || Options.Length > TcpHeader.MaxOptionsLength)
        {
            throw new ArgumentException($"options must be a multiple of 4 and at most 40 bytes (were {Options.Length})");
        }
    }

    /// <summary>The prefix's first <paramref name="prefixLength"/> bits, random bits after them.</summary>
    internal static void Draw(IPAddress prefix, int prefixLength, Random random, Span<byte> destination)
    {
        if (!prefix.TryWriteBytes(destination, out int written) || written != destination.Length)
        {
            throw new ArgumentException($"{prefix} does not fit {destination.Length} bytes");
        }

        int keep = prefixLength < 0 ? destination.Length * 8 : Math.Min(prefixLength, destination.Length * 8);
        Span<byte> noise = stackalloc byte[16];
        random.NextBytes(noise[..destination.Length]);
        for (int i = keep / 8; i < destination.Length; i++)
        {
            // Bits of this byte still in the prefix are kept; the rest come from the noise.
            int kept = Math.Max(0, keep - i * 8);
            byte mask = (byte)(0xFF00 >> kept);
            destination[i] = (byte)((destination[i] & mask) | (noise[i] & ~mask));
        }
    }
}
