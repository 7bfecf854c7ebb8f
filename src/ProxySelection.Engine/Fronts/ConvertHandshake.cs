using System.Buffers.Binary;
using System.Net;

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

    /// <summary>Why the handshake closed.</summary>
    string? Failure { get; }

    /// <inheritdoc cref="Socks5Handshake.Advance"/>
    Socks5Step Advance(ReadOnlySpan<byte> input, out int consumed, out byte[] reply);

    /// <summary>The answer once the upstream leg is up; <paramref name="bound"/> is the proxy's address toward the server.</summary>
    byte[] Succeeded(IPEndPoint? bound);

    /// <summary>The answer to a failed upstream leg, from the SOCKS code that names the failure.</summary>
    byte[] Failed(SocksReply reason);
}

/// <summary>The Convert error codes (RFC 8803 §5.2.7, IANA "Convert Errors").</summary>
public enum ConvertError : byte
{
    UnsupportedVersion = 0,
    MalformedMessage = 1,
    UnsupportedMessage = 2,
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
/// 32-bit words, magic 0x2263) and TLVs, of which one Connect TLV names the server. Unknown TLVs, options to copy into
/// the upstream SYN and cookies are not supported and answered with the Error TLV the RFC gives, then closed.
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

    /// <summary>Total length is one byte of 32-bit words: a message is at most 1020 bytes.</summary>
    public const int MaxMessageLength = 255 * 4;

    private bool _closed;
    private bool _connected;

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
            // RFC 8803 §5.2.7: the value names the version this converter supports.
            return Close(ref reply, ConvertError.UnsupportedVersion, "version " + input[0].ToString(System.Globalization.CultureInfo.InvariantCulture), Version);
        }

        int length = input[1] * 4;
        if (BinaryPrimitives.ReadUInt16BigEndian(input[2..]) != Magic || length < 4)
        {
            return Close(ref reply, ConvertError.MalformedMessage, length < 4 ? "total length below the header" : "bad magic number");
        }

        if (input.Length < length)
        {
            return Socks5Step.NeedMore;
        }

        consumed = length;
        bool connect = false;
        var tlvs = input[4..length];
        while (tlvs.Length > 0)
        {
            if (tlvs.Length < 4)
            {
                return Close(ref reply, ConvertError.MalformedMessage, "truncated TLV");
            }

            int tlvLength = tlvs[1] * 4;
            if (tlvLength < 4 || tlvLength > tlvs.Length)
            {
                return Close(ref reply, ConvertError.MalformedMessage, "TLV length outside the message");
            }

            switch (tlvs[0])
            {
                case TlvConnect:
                    if (connect)
                    {
                        return Close(ref reply, ConvertError.MalformedMessage, "two Connect TLVs");
                    }

                    if (tlvLength < 20)
                    {
                        return Close(ref reply, ConvertError.MalformedMessage, "Connect TLV shorter than 20 bytes");
                    }

                    if (tlvLength > 20)
                    {
                        // TCP options for the upstream SYN: the proxy's kernel writes its own (RFC 8803 §5.2.2 lets it refuse).
                        // The value names the (first) option kind refused (RFC 8803 §5.2.7).
                        return Close(ref reply, ConvertError.UnsupportedTcpOption, "TCP options in the Connect TLV", tlvs[20]);
                    }

                    ushort port = BinaryPrimitives.ReadUInt16BigEndian(tlvs[2..]);
                    var address = new IPAddress(tlvs.Slice(4, 16));
                    if (address.IsIPv4MappedToIPv6)
                    {
                        address = address.MapToIPv4();
                    }

                    if (port == 0)
                    {
                        return Close(ref reply, ConvertError.MalformedMessage, "port 0");
                    }

                    Target = new Socks5Target(address, null, port);
                    connect = true;
                    break;
                case TlvInfo:
                    // A client asking what the converter supports: not offered here (§5.2.1 lets it answer an error).
                    return Close(ref reply, ConvertError.UnsupportedMessage, "Info TLV");
                default:
                    return Close(ref reply, ConvertError.UnsupportedMessage, "TLV type " + tlvs[0].ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            tlvs = tlvs[tlvLength..];
        }

        if (!connect)
        {
            return Close(ref reply, ConvertError.UnsupportedMessage, "no Connect TLV");
        }

        _connected = true;
        return Socks5Step.Connect;
    }

    /// <summary>A Convert message without TLVs: the upstream connection is up, data follows.</summary>
    public byte[] Succeeded(IPEndPoint? bound) => [Version, 1, Magic >> 8, Magic & 0xFF];

    public byte[] Failed(SocksReply reason) => ErrorMessage(reason switch
    {
        SocksReply.ConnectionRefused => ConvertError.ConnectionReset,
        SocksReply.HostUnreachable or SocksReply.TtlExpired => ConvertError.DestinationUnreachable,
        SocksReply.NotAllowed => ConvertError.NotAuthorized,
        _ => ConvertError.NetworkFailure,
    });

    /// <summary>Header and Error TLV (type 30, one word: code and a value byte, zero unless the code gives it a meaning).</summary>
    public static byte[] ErrorMessage(ConvertError error, byte value = 0) => [Version, 2, Magic >> 8, Magic & 0xFF, TlvError, 1, (byte)error, value];

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

    private Socks5Step Close(ref byte[] reply, ConvertError error, string why, byte value = 0)
    {
        _closed = true;
        Failure = why;
        reply = ErrorMessage(error, value);
        return Socks5Step.Close;
    }
}
