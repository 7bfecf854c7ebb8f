using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;

namespace ProxySelection.Engine.Fronts;

/// <summary>The REP field of a SOCKS5 reply (RFC 1928 §6).</summary>
public enum SocksReply : byte
{
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// <summary>Where the handshake is; <see cref="Closed"/> and <see cref="Connect"/> are final.</summary>
public enum Socks5State
{
    Greeting,
    Authentication,
    Request,

    /// <summary>A CONNECT was parsed: the caller opens the upstream leg and sends <see cref="Socks5Handshake.Reply"/>.</summary>
    Connect,

    /// <summary>The handshake failed: the caller sends the step's bytes (if any) and closes.</summary>
    Closed,
}

/// <summary>What the caller does after <see cref="Socks5Handshake.Advance"/>.</summary>
public enum Socks5Step
{
    /// <summary>No complete message yet: read more (nothing was consumed).</summary>
    NeedMore,

    /// <summary>Send the bytes and keep going (a method selection or an authentication success).</summary>
    Send,

    /// <summary>The CONNECT request is complete: <see cref="Socks5Handshake.Target"/> says where.</summary>
    Connect,

    /// <summary>Send the bytes (the RFC's failure reply), then close.</summary>
    Close,
}

/// <summary>The destination a CONNECT names: an address, or a domain name to resolve (ATYP 3).</summary>
public readonly record struct Socks5Target(IPAddress? Address, string? Host, ushort Port)
{
    public override string ToString() => Address is { } address
        ? new IPEndPoint(address, Port).ToString()
        : Host + ":" + Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// The server side of a SOCKS5 handshake (RFC 1928) with NO AUTH or USERNAME/PASSWORD (RFC 1929), CONNECT only, as a
/// pure state machine over received bytes: no socket, no clock, no allocation beyond the replies. Every input ends in a
/// step; malformed or unsupported input ends in <see cref="Socks5Step.Close"/> with the RFC's reply, never an exception.
/// </summary>
public sealed class Socks5Handshake(SocksCredentials? credentials) : IHostConfiguredHandshake
{
    public const byte Version = 5;
    public const byte AuthVersion = 1;
    public const byte MethodNoAuth = 0x00;
    public const byte MethodUserPassword = 0x02;
    public const byte MethodNoneAcceptable = 0xFF;
    public const byte CommandConnect = 1;
    public const byte AddressIPv4 = 1;
    public const byte AddressDomain = 3;
    public const byte AddressIPv6 = 4;

    /// <summary>The longest message a client sends: RFC 1929's request, 3 + 255 + 255 bytes.</summary>
    public const int MaxMessageLength = 513;

    private static readonly byte[] AuthSucceeded = [AuthVersion, 0x00];
    private static readonly byte[] AuthFailed = [AuthVersion, 0x01];

    public Socks5State State { get; private set; } = Socks5State.Greeting;

    /// <summary>Set once <see cref="State"/> is <see cref="Socks5State.Connect"/>.</summary>
    public Socks5Target Target { get; private set; }

    /// <summary>The RFC 1929 user name that authenticated, or null.</summary>
    public string? User { get; private set; }

    /// <summary>Why the handshake closed (the reply code sent, or the method/auth failure in words).</summary>
    public string? Failure { get; private set; }

    public string StateName => State.ToString();

    public byte[] Succeeded(IPEndPoint? bound) => Reply(SocksReply.Succeeded, bound);

    public byte[] Failed(SocksReply reason, Relay.IcmpError? icmp = null) => Reply(reason);

    /// <summary>RFC 1928 has no code for a full proxy: general failure.</summary>
    public byte[] AtCapacity() => Reply(SocksReply.GeneralFailure);

    /// <summary>
    /// Consumes at most one complete message from the start of <paramref name="input"/>. <paramref name="reply"/> holds
    /// the bytes to send for <see cref="Socks5Step.Send"/> and <see cref="Socks5Step.Close"/>, else is empty.
    /// </summary>
    public Socks5Step Advance(ReadOnlySpan<byte> input, out int consumed, out byte[] reply)
    {
        consumed = 0;
        reply = [];
        return State switch
        {
            Socks5State.Greeting => Greeting(input, ref consumed, ref reply),
            Socks5State.Authentication => Authentication(input, ref consumed, ref reply),
            Socks5State.Request => Request(input, ref consumed, ref reply),
            // Final states: nothing more is read.
            _ => Socks5Step.Close,
        };
    }

    /// <summary>RFC 1928 §6 reply: VER REP RSV ATYP BND.ADDR BND.PORT; a failure carries 0.0.0.0:0.</summary>
    public static byte[] Reply(SocksReply code, IPEndPoint? bound = null)
    {
        var address = bound?.Address ?? IPAddress.Any;
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        var bytes = address.GetAddressBytes();
        var reply = new byte[4 + bytes.Length + 2];
        reply[0] = Version;
        reply[1] = (byte)code;
        reply[3] = bytes.Length == 4 ? AddressIPv4 : AddressIPv6;
        bytes.CopyTo(reply, 4);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(4 + bytes.Length), (ushort)(bound?.Port ?? 0));
        return reply;
    }

    private Socks5Step Greeting(ReadOnlySpan<byte> input, ref int consumed, ref byte[] reply)
    {
        // VER NMETHODS METHODS (§3).
        if (input.Length < 2)
        {
            return Socks5Step.NeedMore;
        }

        if (input[0] != Version || input[1] == 0)
        {
            return Close(ref reply, [Version, MethodNoneAcceptable], input[0] != Version ? "not SOCKS version 5" : "no methods offered");
        }

        int length = 2 + input[1];
        if (input.Length < length)
        {
            return Socks5Step.NeedMore;
        }

        consumed = length;
        byte wanted = credentials is null ? MethodNoAuth : MethodUserPassword;
        if (!input[2..length].Contains(wanted))
        {
            return Close(ref reply, [Version, MethodNoneAcceptable], credentials is null ? "NO AUTH not offered" : "USERNAME/PASSWORD not offered");
        }

        State = credentials is null ? Socks5State.Request : Socks5State.Authentication;
        reply = [Version, wanted];
        return Socks5Step.Send;
    }

    private Socks5Step Authentication(ReadOnlySpan<byte> input, ref int consumed, ref byte[] reply)
    {
        // RFC 1929 §2: VER ULEN UNAME PLEN PASSWD.
        if (input.Length < 2)
        {
            return Socks5Step.NeedMore;
        }

        if (input[0] != AuthVersion)
        {
            return Close(ref reply, AuthFailed, "not username/password version 1");
        }

        int userLength = input[1];
        if (input.Length < 2 + userLength + 1)
        {
            return Socks5Step.NeedMore;
        }

        int passwordLength = input[2 + userLength];
        int length = 3 + userLength + passwordLength;
        if (input.Length < length)
        {
            return Socks5Step.NeedMore;
        }

        consumed = length;
        var user = input.Slice(2, userLength);
        if (!credentials!.Verify(user, input.Slice(3 + userLength, passwordLength), out var name))
        {
            // A failure status closes the connection (RFC 1929 §2).
            return Close(ref reply, AuthFailed, "authentication failed");
        }

        User = name;
        State = Socks5State.Request;
        reply = AuthSucceeded;
        return Socks5Step.Send;
    }

    private Socks5Step Request(ReadOnlySpan<byte> input, ref int consumed, ref byte[] reply)
    {
        // VER CMD RSV ATYP DST.ADDR DST.PORT (§4).
        if (input.Length < 4)
        {
            return Socks5Step.NeedMore;
        }

        if (input[0] != Version || input[2] != 0)
        {
            return Fail(ref reply, SocksReply.GeneralFailure, input[0] != Version ? "request not SOCKS version 5" : "reserved byte not zero");
        }

        if (input[1] != CommandConnect)
        {
            // BIND and UDP ASSOCIATE are not offered: the host-configured mode relays one TCP connection.
            return Fail(ref reply, SocksReply.CommandNotSupported, "command " + input[1].ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        int addressLength;
        switch (input[3])
        {
            case AddressIPv4:
                addressLength = 4;
                break;
            case AddressIPv6:
                addressLength = 16;
                break;
            case AddressDomain:
                if (input.Length < 5)
                {
                    return Socks5Step.NeedMore;
                }

                addressLength = 1 + input[4];
                break;
            default:
                return Fail(ref reply, SocksReply.AddressTypeNotSupported, "address type " + input[3].ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        int length = 4 + addressLength + 2;
        if (input.Length < length)
        {
            return Socks5Step.NeedMore;
        }

        consumed = length;
        var address = input.Slice(4, addressLength);
        ushort port = BinaryPrimitives.ReadUInt16BigEndian(input.Slice(4 + addressLength));
        if (port == 0)
        {
            return Fail(ref reply, SocksReply.GeneralFailure, "port 0");
        }

        if (input[3] == AddressDomain)
        {
            var name = address[1..];
            if (name.Contains((byte)':') && IsAscii(name) && IPAddress.TryParse(System.Text.Encoding.ASCII.GetString(name), out var literal))
            {
                // An IPv6 literal sent as a name (some clients do): connect to it as ATYP 4 would.
                Target = new Socks5Target(literal, null, port);
                State = Socks5State.Connect;
                return Socks5Step.Connect;
            }

            if (!IsHostName(name))
            {
                // No resolver answers a name like that: the host cannot be reached.
                return Fail(ref reply, SocksReply.HostUnreachable, "not a host name");
            }

            Target = new Socks5Target(null, System.Text.Encoding.ASCII.GetString(name), port);
        }
        else
        {
            Target = new Socks5Target(new IPAddress(address), null, port);
        }

        State = Socks5State.Connect;
        return Socks5Step.Connect;
    }

    /// <summary>Letters, digits, '-', '_' and '.', 1..253 bytes, no empty label: what a resolver may be asked.</summary>
    public static bool IsHostName(ReadOnlySpan<byte> name)
    {
        if (name.Length is 0 or > 253 || name[0] == '.' || name.IndexOf(".."u8) >= 0)
        {
            return false;
        }

        foreach (byte b in name)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'-' or (byte)'_' or (byte)'.'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsAscii(ReadOnlySpan<byte> bytes) => !bytes.ContainsAnyExceptInRange((byte)0x21, (byte)0x7E);

    private Socks5Step Fail(ref byte[] reply, SocksReply code, string why) => Close(ref reply, Reply(code), why);

    private Socks5Step Close(ref byte[] reply, byte[] bytes, string why)
    {
        State = Socks5State.Closed;
        Failure = why;
        reply = bytes;
        return Socks5Step.Close;
    }
}

/// <summary>
/// RFC 1929 users: name to password, compared in constant time. Loaded from a file of <c>name:password</c> lines
/// (UTF-8; blank lines and lines starting with '#' skipped; each part 1..255 bytes).
/// </summary>
public sealed class SocksCredentials
{
    // The password's SHA-256, not the password: comparing fixed-length digests in fixed time leaks neither the bytes
    // nor the length.
    private static readonly byte[] NoUser = new byte[SHA256.HashSizeInBytes];

    // Replaced whole on a reload (ReplaceWith): a handshake checks against the old users or the new, never a mix.
    private volatile Dictionary<string, (string Name, byte[] PasswordHash)> _users = new(StringComparer.Ordinal);

    public int Count => _users.Count;

    public void Add(string name, string password)
    {
        var user = System.Text.Encoding.UTF8.GetBytes(name);
        _users[Convert.ToHexString(user)] = (name, SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(password)));
    }

    public bool Verify(ReadOnlySpan<byte> user, ReadOnlySpan<byte> password, out string? name)
    {
        name = null;
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(password, hash);
        // Keyed by the bytes' hex: any byte sequence looks up without a decoding failure.
        bool known = _users.TryGetValue(Convert.ToHexString(user), out var entry);
        // Same work for an unknown user as for a wrong password.
        bool equal = CryptographicOperations.FixedTimeEquals(known ? entry.PasswordHash : NoUser, hash);
        if (!known || !equal)
        {
            return false;
        }

        name = entry.Name;
        return true;
    }

    /// <summary>SIGHUP: the users file read again; connections past their authentication keep going.</summary>
    public void ReplaceWith(SocksCredentials next)
    {
        ArgumentNullException.ThrowIfNull(next);
        _users = next._users;
    }

    /// <summary>Parses the file's text; null and <paramref name="error"/> when a line is malformed.</summary>
    public static SocksCredentials? Parse(string text, out string error)
    {
        error = "";
        var credentials = new SocksCredentials();
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            int colon = line.IndexOf(':', StringComparison.Ordinal);
            string lineNumber = (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (colon <= 0 || colon == line.Length - 1)
            {
                error = $"line {lineNumber}: expected name:password";
                return null;
            }

            var (name, password) = (line[..colon], line[(colon + 1)..]);
            if (System.Text.Encoding.UTF8.GetByteCount(name) > 255 || System.Text.Encoding.UTF8.GetByteCount(password) > 255)
            {
                error = $"line {lineNumber}: name and password are at most 255 bytes each (RFC 1929)";
                return null;
            }

            credentials.Add(name, password);
        }

        if (credentials.Count == 0)
        {
            error = "no users in the file";
            return null;
        }

        return credentials;
    }
}
