using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Fronts;

/// <summary>What a host-configured front parses: SOCKS5 (<see cref="Socks5Handshake"/>) or Convert (<see cref="ConvertHandshake"/>).</summary>
public interface IHostConfiguredHandshake
{
    /// <summary>The state in words, for the log.</summary>
    string StateName { get; }

    /// <summary>Set once <see cref="Advance"/> returned <see cref="Socks5Step.Connect"/>.</summary>
    Socks5Target Target { get; }

    /// <summary>The authenticated user, if the protocol has users.</summary>
    string? User { get; }

    /// <summary>Why the handshake closed; null when it closed after a complete exchange (an RFC 8803 Info answered).</summary>
    string? Failure { get; }

    /// <summary>
    /// <inheritdoc cref="Socks5Handshake.Advance"/> A <see cref="Socks5Step.Close"/> with an empty reply means: reset the
    /// connection (RFC 8803: a Total Length of zero).
    /// </summary>
    Socks5Step Advance(ReadOnlySpan<byte> input, out int consumed, out byte[] reply);

    /// <summary>The answer once the upstream leg is up; <paramref name="bound"/> is the proxy's address toward the server.</summary>
    byte[] Succeeded(IPEndPoint? bound);

    /// <summary>
    /// The answer to a failed upstream leg, from the SOCKS code that names the failure and, when one ended the connect,
    /// the ICMP error the proxy received.
    /// </summary>
    byte[] Failed(SocksReply reason, IcmpError? icmp = null);

    /// <summary>The answer when the request is complete but the proxy has no slot for it (at its connection limit).</summary>
    byte[] AtCapacity();
}

/// <summary>The Convert error codes (RFC 8803 Error TLV, IANA "Convert Errors").</summary>
public enum ConvertError : byte
{
    UnsupportedVersion = 0,
    MalformedMessage = 1,
    UnsupportedMessage = 2,
    MissingCookie = 3,
    NotAuthorized = 32,
    UnsupportedTcpOption = 33,
    ResourceExceeded = 64,
    NetworkFailure = 65,
    ConnectionReset = 96,
    DestinationUnreachable = 97,
}

/// <summary>
/// The Transport Converter side of the 0-RTT TCP Convert Protocol (RFC 8803) as a pure state machine: the client's
/// first bytes (in its SYN under TCP Fast Open) are a Convert message, a 4-byte header (version 1, total length in
/// 32-bit words, magic 0x2263) and TLVs: a Connect TLV names the server, an Info TLV asks what the converter supports
/// (answered with the Supported TCP Extensions TLV). Options to copy into the upstream SYN, cookies and unknown TLVs are
/// not supported and answered with the Error TLV the RFC gives, then closed.
/// </summary>
public sealed class ConvertHandshake : IHostConfiguredHandshake
{
    public const byte Version = 1;
    public const ushort Magic = 0x2263;
    public const byte TlvInfo = 1;
    public const byte TlvConnect = 10;
    public const byte TlvExtendedTcpHeader = 20;
    public const byte TlvSupportedTcpExtensions = 21;
    public const byte TlvCookie = 22;
    public const byte TlvError = 30;

    /// <summary>TCP option kind of Multipath TCP: the conversion this converter offers (RFC 8803 names it as the example).</summary>
    public const byte KindMptcp = 30;

    /// <summary>Total length is one byte of 32-bit words: a message is at most 1020 bytes.</summary>
    public const int MaxMessageLength = 255 * 4;

    /// <summary>
    /// Resource Exceeded and Network Failure carry the delay (s) before the client asks again; 0 would mean "at least
    /// 30 s". The converter itself is fine after a failed leg or a full table: a short wait.
    /// </summary>
    public const byte RetryAfterSeconds = 1;

    private static readonly byte[] SupportedExtensions = [TlvSupportedTcpExtensions, 2, 0, 0, KindMptcp, 0, 0, 0];

    private bool _closed;
    private bool _connected;
    private bool _info;

    public string StateName => _closed ? "Closed" : _connected ? "Connect" : "Message";

    public Socks5Target Target { get; private set; }

    public string? User => null;

    public string? Failure { get; private set; }

    public Socks5Step Advance(ReadOnlySpan<byte> input, out int consumed, out byte[] reply)
    {
        consumed = 0;
        reply = [];
        if (_closed || _connected)
        {
            return Socks5Step.Close;
        }

        if (input.Length < 4)
        {
            return Socks5Step.NeedMore;
        }

        if (input[0] != Version)
        {
            // RFC 8803, Error TLV: the value names the version this converter supports.
            return Close(ref reply, ErrorMessage(ConvertError.UnsupportedVersion, Version), "version " + input[0].ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        int length = input[1] * 4;
        if (length == 0)
        {
            // RFC 8803, fixed header: a Total Length of zero is invalid and the connection MUST be reset.
            return Close(ref reply, [], "total length 0");
        }

        if (BinaryPrimitives.ReadUInt16BigEndian(input[2..]) != Magic)
        {
            return Refuse(ref reply, ConvertError.MalformedMessage, "bad magic number", input[..Math.Min(length, input.Length)]);
        }

        if (input.Length < length)
        {
            return Socks5Step.NeedMore;
        }

        consumed = length;
        var message = input[..length];
        bool connect = false;
        var tlvs = input[4..length];
        while (tlvs.Length > 0)
        {
            if (tlvs.Length < 4)
            {
                return Refuse(ref reply, ConvertError.MalformedMessage, "truncated TLV", message);
            }

            int tlvLength = tlvs[1] * 4;
            if (tlvLength < 4 || tlvLength > tlvs.Length)
            {
                return Refuse(ref reply, ConvertError.MalformedMessage, "TLV length outside the message", message);
            }

            switch (tlvs[0])
            {
                case TlvConnect:
                    if (connect)
                    {
                        // RFC 8803: a TLV appears once; a second is a Malformed Message.
                        return Refuse(ref reply, ConvertError.MalformedMessage, "two Connect TLVs", message);
                    }

                    if (tlvLength < 20)
                    {
                        return Refuse(ref reply, ConvertError.MalformedMessage, "Connect TLV shorter than 20 bytes", message);
                    }

                    if (UnsupportedOptions(tlvs[20..tlvLength], out var kinds) is { } malformed)
                    {
                        return Refuse(ref reply, ConvertError.MalformedMessage, malformed, message);
                    }

                    if (kinds.Length > 0)
                    {
                        // This converter's kernel writes the upstream SYN's options; the value lists those refused.
                        return Close(ref reply, ErrorMessage(ConvertError.UnsupportedTcpOption, kinds), "TCP options in the Connect TLV");
                    }

                    ushort port = BinaryPrimitives.ReadUInt16BigEndian(tlvs[2..]);
                    var address = new IPAddress(tlvs.Slice(4, 16));
                    if (address.IsIPv4MappedToIPv6)
                    {
                        address = address.MapToIPv4();
                    }

                    if (port == 0)
                    {
                        return Refuse(ref reply, ConvertError.MalformedMessage, "port 0", message);
                    }

                    if (IsMulticastBroadcastOrLoopback(address))
                    {
                        // RFC 8803, Connect TLV: such a Remote Peer IP Address is a Malformed Message.
                        return Refuse(ref reply, ConvertError.MalformedMessage, "multicast, broadcast or loopback address", message);
                    }

                    Target = new Socks5Target(address, null, port);
                    connect = true;
                    break;
                case TlvInfo:
                    if (_info)
                    {
                        return Refuse(ref reply, ConvertError.MalformedMessage, "two Info TLVs", message);
                    }

                    // RFC 8803, Info TLV: answered with the Supported TCP Extensions TLV.
                    _info = true;
                    break;
                default:
                    // Cookie, Extended TCP Header (the converter's to send), type 0 and unknown types.
                    return Refuse(ref reply, ConvertError.UnsupportedMessage, "TLV type " + tlvs[0].ToString(System.Globalization.CultureInfo.InvariantCulture), message);
            }

            tlvs = tlvs[tlvLength..];
        }

        if (!connect)
        {
            if (_info)
            {
                // Only the capabilities asked for: answered, then closed (no failure).
                _closed = true;
                reply = Message(SupportedExtensions);
                return Socks5Step.Close;
            }

            return Refuse(ref reply, ConvertError.UnsupportedMessage, "no Connect TLV", message);
        }

        _connected = true;
        return Socks5Step.Connect;
    }

    /// <summary>A Convert message without TLVs (with the Supported TCP Extensions TLV if an Info TLV asked): the upstream connection is up, data follows.</summary>
    public byte[] Succeeded(IPEndPoint? bound) => _info ? Message(SupportedExtensions) : Message([]);

    /// <summary>
    /// RFC 8803, Error TLV: Destination Unreachable echoes the code of the ICMP Destination Unreachable received; a reset
    /// from the server is Connection Reset; a destination this converter refuses is Not Authorized; a leg that failed
    /// without an ICMP error (no answer, no local route, an open circuit) is this converter's Network Failure.
    /// </summary>
    public byte[] Failed(SocksReply reason, IcmpError? icmp = null) => icmp is { IsDestinationUnreachable: true } unreachable
        ? ErrorMessage(ConvertError.DestinationUnreachable, unreachable.Code)
        : reason switch
        {
            SocksReply.ConnectionRefused => ErrorMessage(ConvertError.ConnectionReset),
            SocksReply.NotAllowed => ErrorMessage(ConvertError.NotAuthorized),
            _ => ErrorMessage(ConvertError.NetworkFailure, RetryAfterSeconds),
        };

    public byte[] AtCapacity() => ErrorMessage(ConvertError.ResourceExceeded, RetryAfterSeconds);

    /// <summary>
    /// Header and Error TLV: code and value (zero unless the code gives it a meaning; several bytes for a list of
    /// versions or option kinds), padded with zeros to a 32-bit boundary.
    /// </summary>
    public static byte[] ErrorMessage(ConvertError error, params ReadOnlySpan<byte> value)
    {
        // Type, Length, Error Code, then the value (at least one byte).
        int tlvLength = Math.Max(4, (3 + value.Length + 3) / 4 * 4);
        var tlv = new byte[tlvLength];
        tlv[0] = TlvError;
        tlv[1] = (byte)(tlvLength / 4);
        tlv[2] = (byte)error;
        value.CopyTo(tlv.AsSpan(3));
        return Message(tlv);
    }

    /// <summary>
    /// RFC 8803, Error TLV: Malformed Message and Unsupported Message echo the received message, shifted by one byte (a
    /// zero value byte first) to keep its alignment; cut to what fits a Convert message.
    /// </summary>
    public static byte[] EchoError(ConvertError error, ReadOnlySpan<byte> received)
    {
        // 255 words less the header and the TLV's first word.
        var echo = received[..Math.Min(received.Length, MaxMessageLength - 8)];
        return ErrorMessage(error, [0, .. echo]);
    }

    /// <summary>A Convert message: the fixed header (version, total length, magic) and <paramref name="tlvs"/>.</summary>
    private static byte[] Message(ReadOnlySpan<byte> tlvs)
    {
        var message = new byte[4 + tlvs.Length];
        message[0] = Version;
        message[1] = (byte)(message.Length / 4);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(2), Magic);
        tlvs.CopyTo(message.AsSpan(4));
        return message;
    }

    /// <summary>A Convert message with one Connect TLV (the client's side; tests and the lab client).</summary>
    public static byte[] ConnectMessage(IPEndPoint destination)
    {
        var message = new byte[24];
        message[0] = Version;
        message[1] = 6;
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(2), Magic);
        message[4] = TlvConnect;
        message[5] = 5;
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(6), (ushort)destination.Port);
        destination.Address.MapToIPv6().GetAddressBytes().CopyTo(message, 8);
        return message;
    }

    /// <summary>
    /// The kinds in a Connect TLV's TCP Options field that this converter refuses: all but EOL, NOP and MSS, which
    /// RFC 8803 says to ignore (base TCP options). Null, or why the field does not parse.
    /// </summary>
    private static string? UnsupportedOptions(ReadOnlySpan<byte> options, out byte[] kinds)
    {
        var refused = new List<byte>();
        kinds = [];
        while (options.Length > 0)
        {
            byte kind = options[0];
            if (kind == 0)
            {
                // End of the list: the rest is the padding to a 32-bit boundary.
                break;
            }

            if (kind == 1)
            {
                options = options[1..];
                continue;
            }

            if (options.Length < 2 || options[1] < 2 || options[1] > options.Length)
            {
                return "TCP option length outside the Connect TLV";
            }

            if (kind != 2 && !refused.Contains(kind))
            {
                refused.Add(kind);
            }

            options = options[options[1]..];
        }

        kinds = [.. refused];
        return null;
    }

    private static bool IsMulticastBroadcastOrLoopback(IPAddress address) =>
        IPAddress.IsLoopback(address) || address.IsIPv6Multicast || address.Equals(IPAddress.Broadcast)
        || (address.AddressFamily == AddressFamily.InterNetwork && (address.GetAddressBytes()[0] & 0xF0) == 0xE0);

    private Socks5Step Refuse(ref byte[] reply, ConvertError error, string why, ReadOnlySpan<byte> received) =>
        Close(ref reply, EchoError(error, received), why);

    private Socks5Step Close(ref byte[] reply, byte[] bytes, string why)
    {
        _closed = true;
        Failure = why;
        reply = bytes;
        return Socks5Step.Close;
    }
}
