using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// What a tag is bound to (spec §9.2): the connection's addresses and ports, always in client→server orientation
/// whichever way the segment travels, the ISN of the SYN and, for an option on a SYN/ACK, the ISN of the SYN/ACK.
/// Addresses are kept as 128-bit integers so the struct carries no reference.
/// </summary>
public readonly struct MpProxyFlow : IEquatable<MpProxyFlow>
{
    private readonly UInt128 _client;
    private readonly UInt128 _server;

    private MpProxyFlow(bool isIPv6, UInt128 client, UInt128 server, ushort clientPort, ushort serverPort, uint synIsn, uint synAckIsn, bool hasSynAck)
    {
        IsIPv6 = isIPv6;
        _client = client;
        _server = server;
        ClientPort = clientPort;
        ServerPort = serverPort;
        SynIsn = synIsn;
        SynAckIsn = synAckIsn;
        HasSynAck = hasSynAck;
    }

    /// <summary>A flow for an option on a SYN. Addresses are 4 (IPv4) or 16 (IPv6) bytes in network order, both the same family.</summary>
    public static MpProxyFlow ForSyn(ReadOnlySpan<byte> clientAddress, ReadOnlySpan<byte> serverAddress, ushort clientPort, ushort serverPort, uint synIsn)
    {
        if (clientAddress.Length != serverAddress.Length || clientAddress.Length is not (4 or 16))
        {
            throw new ArgumentException("addresses must both be 4 (IPv4) or both 16 (IPv6) bytes", nameof(clientAddress));
        }

        bool v6 = clientAddress.Length == 16;
        return new(v6, ReadAddress(clientAddress), ReadAddress(serverAddress), clientPort, serverPort, synIsn, 0, false);
    }

    public static MpProxyFlow ForSyn(IPAddress client, IPAddress server, ushort clientPort, ushort serverPort, uint synIsn)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(server);
        Span<byte> c = stackalloc byte[16];
        Span<byte> s = stackalloc byte[16];
        if (!client.TryWriteBytes(c, out int cn) || !server.TryWriteBytes(s, out int sn))
        {
            throw new ArgumentException("address does not fit 16 bytes", nameof(client));
        }

        return ForSyn(c[..cn], s[..sn], clientPort, serverPort, synIsn);
    }

    /// <summary>The same flow as seen on its SYN/ACK (an option on a SYN/ACK also covers the SYN/ACK's ISN).</summary>
    public MpProxyFlow WithSynAck(uint synAckIsn) => new(IsIPv6, _client, _server, ClientPort, ServerPort, SynIsn, synAckIsn, true);

    public bool IsIPv6 { get; }

    public ushort ClientPort { get; }

    public ushort ServerPort { get; }

    public uint SynIsn { get; }

    /// <summary>Meaningful only when <see cref="HasSynAck"/>.</summary>
    public uint SynAckIsn { get; }

    /// <summary>True when the option rides on a SYN/ACK (the tag then also covers <see cref="SynAckIsn"/>).</summary>
    public bool HasSynAck { get; }

    public int AddressLength => IsIPv6 ? 16 : 4;

    public void WriteClientAddress(Span<byte> destination) => WriteAddress(destination, _client, IsIPv6);

    public void WriteServerAddress(Span<byte> destination) => WriteAddress(destination, _server, IsIPv6);

    public IPAddress ClientAddress => ToAddress(_client, IsIPv6);

    public IPAddress ServerAddress => ToAddress(_server, IsIPv6);

    private static UInt128 ReadAddress(ReadOnlySpan<byte> address) =>
        address.Length == 16 ? BinaryPrimitives.ReadUInt128BigEndian(address) : BinaryPrimitives.ReadUInt32BigEndian(address);

    private static void WriteAddress(Span<byte> destination, UInt128 value, bool v6)
    {
        if (v6)
        {
            BinaryPrimitives.WriteUInt128BigEndian(destination, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)value);
        }
    }

    private static IPAddress ToAddress(UInt128 value, bool v6)
    {
        Span<byte> bytes = stackalloc byte[16];
        WriteAddress(bytes, value, v6);
        return new IPAddress(bytes[..(v6 ? 16 : 4)]);
    }

    public bool Equals(MpProxyFlow other) =>
        IsIPv6 == other.IsIPv6 && _client == other._client && _server == other._server && ClientPort == other.ClientPort
        && ServerPort == other.ServerPort && SynIsn == other.SynIsn && SynAckIsn == other.SynAckIsn && HasSynAck == other.HasSynAck;

    public override bool Equals(object? obj) => obj is MpProxyFlow other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_client, _server, ClientPort, ServerPort, SynIsn, SynAckIsn, HasSynAck);

    public static bool operator ==(MpProxyFlow left, MpProxyFlow right) => left.Equals(right);

    public static bool operator !=(MpProxyFlow left, MpProxyFlow right) => !left.Equals(right);

    public override string ToString() =>
        $"{(IsIPv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork)} {ClientAddress}:{ClientPort} -> {ServerAddress}:{ServerPort} syn={SynIsn:x8}" +
        (HasSynAck ? $" synack={SynAckIsn:x8}" : string.Empty);
}
