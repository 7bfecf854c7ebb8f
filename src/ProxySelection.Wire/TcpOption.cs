using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>TCP option kinds this layer decodes (IANA TCP parameters); any other value is kept raw.</summary>
public enum TcpOptionKind : byte
{
    EndOfList = 0,
    Nop = 1,
    Mss = 2,
    WindowScale = 3,
    SackPermitted = 4,
    Sack = 5,
    Timestamps = 8,
    Md5Signature = 19,
    Authentication = 29,
    Mptcp = 30,
    FastOpen = 34,
}

/// <summary>
/// One TCP option as found in the option area: its kind, and where its bytes are (offset and length relative to
/// the option area the <see cref="TcpOptionReader"/> walked). EOL and NOP have length 1.
/// </summary>
public readonly record struct TcpOption(TcpOptionKind Kind, int Offset, int Length)
{
    /// <summary>The option's bytes (kind and length byte included) in <paramref name="options"/>.</summary>
    public ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> options) => options.Slice(Offset, Length);

    /// <summary>The option's bytes (kind and length byte included) in <paramref name="options"/>.</summary>
    public Span<byte> Slice(Span<byte> options) => options.Slice(Offset, Length);
}

/// <summary>
/// Walks a TCP option area (RFC 9293 section 3.1). Usable with foreach. Stops after EOL (the rest is padding).
/// When <see cref="MoveNext"/> returns false, <see cref="Error"/> says whether the walk ended cleanly.
/// </summary>
public ref struct TcpOptionReader
{
    private readonly ReadOnlySpan<byte> _options;
    private int _position;
    private bool _done;

    public TcpOptionReader(ReadOnlySpan<byte> options)
    {
        _options = options;
    }

    public TcpOption Current { get; private set; }

    /// <summary>The bytes of <see cref="Current"/>.</summary>
    public readonly ReadOnlySpan<byte> CurrentBytes => _options.Slice(Current.Offset, Current.Length);

    /// <summary><see cref="WireError.None"/> unless the walk stopped at a malformed option.</summary>
    public WireError Error { get; private set; }

    /// <summary>Offset in the option area of the malformed byte when <see cref="Error"/> is set.</summary>
    public int ErrorOffset { get; private set; }

    /// <summary>Offset of the next byte to read; after EOL, where the padding starts.</summary>
    public readonly int Position => _position;

    public readonly TcpOptionReader GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_done || _position >= _options.Length)
        {
            _done = true;
            return false;
        }

        var kind = _options[_position];
        if (kind <= 1)
        {
            Current = new TcpOption((TcpOptionKind)kind, _position, 1);
            _position++;
            _done = kind == 0;
            return true;
        }

        if (_position + 1 >= _options.Length)
        {
            return Fail(WireError.OptionRunsPastHeader, _position);
        }

        int length = _options[_position + 1];
        if (length < 2)
        {
            return Fail(WireError.BadOptionLength, _position + 1);
        }

        if (_position + length > _options.Length)
        {
            return Fail(WireError.OptionRunsPastHeader, _position + 1);
        }

        Current = new TcpOption((TcpOptionKind)kind, _position, length);
        _position += length;
        return true;
    }

    /// <summary>Walks the whole area and reports the first error, without yielding anything.</summary>
    public static WireError Validate(ReadOnlySpan<byte> options, out int errorOffset)
    {
        var reader = new TcpOptionReader(options);
        while (reader.MoveNext())
        {
        }

        errorOffset = reader.ErrorOffset;
        return reader.Error;
    }

    /// <summary>Finds the first option of <paramref name="kind"/>.</summary>
    public static WireError TryFind(ReadOnlySpan<byte> options, TcpOptionKind kind, out TcpOption option)
    {
        var reader = new TcpOptionReader(options);
        while (reader.MoveNext())
        {
            if (reader.Current.Kind == kind)
            {
                option = reader.Current;
                return WireError.None;
            }
        }

        option = default;
        return reader.Error == WireError.None ? WireError.OptionNotFound : reader.Error;
    }

    /// <summary>Finds the first MPTCP option (kind 30) of <paramref name="subtype"/>.</summary>
    public static WireError TryFindMptcp(ReadOnlySpan<byte> options, MptcpSubtype subtype, out TcpOption option)
    {
        var reader = new TcpOptionReader(options);
        while (reader.MoveNext())
        {
            if (reader.Current.Kind == TcpOptionKind.Mptcp
                && MptcpOption.TryPeekSubtype(reader.CurrentBytes, out var found) == WireError.None
                && found == subtype)
            {
                option = reader.Current;
                return WireError.None;
            }
        }

        option = default;
        return reader.Error == WireError.None ? WireError.OptionNotFound : reader.Error;
    }

    private bool Fail(WireError error, int offset)
    {
        Error = error;
        ErrorOffset = offset;
        _done = true;
        return false;
    }
}

/// <summary>One SACK block (RFC 2018): left and right edge, absolute sequence numbers.</summary>
public readonly record struct SackBlock(uint Left, uint Right);

/// <summary>TCP timestamps option values (RFC 7323).</summary>
public readonly record struct TcpTimestamps(uint Value, uint EchoReply);

/// <summary>A SACK option's blocks over its bytes.</summary>
public readonly ref struct SackOption
{
    private readonly ReadOnlySpan<byte> _blocks;

    internal SackOption(ReadOnlySpan<byte> blocks) => _blocks = blocks;

    public int Count => _blocks.Length / 8;

    public SackBlock this[int index] => new(
        BinaryPrimitives.ReadUInt32BigEndian(_blocks.Slice(index * 8, 4)),
        BinaryPrimitives.ReadUInt32BigEndian(_blocks.Slice((index * 8) + 4, 4)));
}

/// <summary>A TCP-AO option (RFC 5925 section 2.2) over its bytes.</summary>
public readonly ref struct TcpAuthenticationOption
{
    internal TcpAuthenticationOption(byte keyId, byte nextKeyId, ReadOnlySpan<byte> mac)
    {
        KeyId = keyId;
        NextKeyId = nextKeyId;
        Mac = mac;
    }

    public byte KeyId { get; }

    public byte NextKeyId { get; }

    public ReadOnlySpan<byte> Mac { get; }
}

/// <summary>
/// Decoders for the value of one non-MPTCP option. Each takes the option's bytes (kind and length byte included,
/// as <see cref="TcpOptionReader.CurrentBytes"/> gives them) and checks kind and length.
/// </summary>
public static class TcpOptionValues
{
    public const int MssLength = 4;
    public const int WindowScaleLength = 3;
    public const int SackPermittedLength = 2;
    public const int TimestampsLength = 10;
    public const int Md5Length = 18;
    public const int MaxWindowScaleShift = 14;

    public static WireError TryReadMss(ReadOnlySpan<byte> option, out ushort mss)
    {
        mss = 0;
        var error = Check(option, TcpOptionKind.Mss, MssLength);
        if (error == WireError.None)
        {
            mss = BinaryPrimitives.ReadUInt16BigEndian(option[2..]);
        }

        return error;
    }

    /// <summary>Reads the shift count as sent (RFC 7323 section 2.3 caps its use at 14, not its encoding).</summary>
    public static WireError TryReadWindowScale(ReadOnlySpan<byte> option, out byte shift)
    {
        shift = 0;
        var error = Check(option, TcpOptionKind.WindowScale, WindowScaleLength);
        if (error == WireError.None)
        {
            shift = option[2];
        }

        return error;
    }

    public static WireError TryReadSackPermitted(ReadOnlySpan<byte> option) =>
        Check(option, TcpOptionKind.SackPermitted, SackPermittedLength);

    public static WireError TryReadTimestamps(ReadOnlySpan<byte> option, out TcpTimestamps timestamps)
    {
        timestamps = default;
        var error = Check(option, TcpOptionKind.Timestamps, TimestampsLength);
        if (error == WireError.None)
        {
            timestamps = new TcpTimestamps(
                BinaryPrimitives.ReadUInt32BigEndian(option[2..]),
                BinaryPrimitives.ReadUInt32BigEndian(option[6..]));
        }

        return error;
    }

    /// <summary>SACK: 2 + 8*n bytes, n = 1..4 (RFC 2018 section 3).</summary>
    public static WireError TryReadSack(ReadOnlySpan<byte> option, out SackOption sack)
    {
        sack = default;
        var error = Check(option, TcpOptionKind.Sack, -1);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length < 10 || (option.Length - 2) % 8 != 0)
        {
            return WireError.BadOptionLength;
        }

        sack = new SackOption(option[2..]);
        return WireError.None;
    }

    /// <summary>TCP Fast Open: empty cookie (cookie request) or 4..16 bytes, even (RFC 7413 section 4.1.1).</summary>
    public static WireError TryReadFastOpen(ReadOnlySpan<byte> option, out ReadOnlySpan<byte> cookie)
    {
        cookie = default;
        var error = Check(option, TcpOptionKind.FastOpen, -1);
        if (error != WireError.None)
        {
            return error;
        }

        var cookieLength = option.Length - 2;
        if (cookieLength != 0 && (cookieLength < 4 || cookieLength > 16 || cookieLength % 2 != 0))
        {
            return WireError.BadOptionLength;
        }

        cookie = option[2..];
        return WireError.None;
    }

    /// <summary>TCP MD5 signature: a 16-byte digest (RFC 2385).</summary>
    public static WireError TryReadMd5(ReadOnlySpan<byte> option, out ReadOnlySpan<byte> digest)
    {
        digest = default;
        var error = Check(option, TcpOptionKind.Md5Signature, Md5Length);
        if (error == WireError.None)
        {
            digest = option[2..];
        }

        return error;
    }

    /// <summary>TCP-AO: KeyID, RNextKeyID, MAC of any length (RFC 5925 section 2.2).</summary>
    public static WireError TryReadAuthentication(ReadOnlySpan<byte> option, out TcpAuthenticationOption ao)
    {
        ao = default;
        var error = Check(option, TcpOptionKind.Authentication, -1);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length < 4)
        {
            return WireError.BadOptionLength;
        }

        ao = new TcpAuthenticationOption(option[2], option[3], option[4..]);
        return WireError.None;
    }

    private static WireError Check(ReadOnlySpan<byte> option, TcpOptionKind kind, int fixedLength)
    {
        if (option.Length < 2)
        {
            return WireError.Truncated;
        }

        if (option[0] != (byte)kind)
        {
            return WireError.BadArgument;
        }

        if (option[1] != option.Length || (fixedLength >= 0 && option.Length != fixedLength))
        {
            return WireError.BadOptionLength;
        }

        return WireError.None;
    }
}
