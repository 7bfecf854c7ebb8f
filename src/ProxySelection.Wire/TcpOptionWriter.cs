using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>
/// Writes TCP options one after another into the caller's buffer. Every write refuses with
/// <see cref="WireError.OptionSpaceExceeded"/> past the 40-byte option space and with
/// <see cref="WireError.BufferTooSmall"/> past the buffer, leaving what was written intact.
/// </summary>
public ref struct TcpOptionWriter
{
    private readonly Span<byte> _buffer;
    private int _position;

    public TcpOptionWriter(Span<byte> buffer)
    {
        _buffer = buffer;
    }

    /// <summary>Bytes written so far.</summary>
    public readonly int Position => _position;

    public readonly ReadOnlySpan<byte> Written => _buffer[.._position];

    public WireError TryWriteEndOfList() => TryWriteSingle(TcpOptionKind.EndOfList);

    public WireError TryWriteNop() => TryWriteSingle(TcpOptionKind.Nop);

    public WireError TryWriteMss(ushort mss)
    {
        var error = Reserve(TcpOptionValues.MssLength, out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.Mss);
            BinaryPrimitives.WriteUInt16BigEndian(span[2..], mss);
        }

        return error;
    }

    public WireError TryWriteWindowScale(byte shift)
    {
        var error = Reserve(TcpOptionValues.WindowScaleLength, out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.WindowScale);
            span[2] = shift;
        }

        return error;
    }

    public WireError TryWriteSackPermitted()
    {
        var error = Reserve(TcpOptionValues.SackPermittedLength, out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.SackPermitted);
        }

        return error;
    }

    /// <summary>SACK with 1..4 blocks.</summary>
    public WireError TryWriteSack(scoped ReadOnlySpan<SackBlock> blocks)
    {
        if (blocks.IsEmpty || blocks.Length > 4)
        {
            return WireError.BadArgument;
        }

        var error = Reserve(2 + (8 * blocks.Length), out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.Sack);
            for (var i = 0; i < blocks.Length; i++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(2 + (8 * i))..], blocks[i].Left);
                BinaryPrimitives.WriteUInt32BigEndian(span[(6 + (8 * i))..], blocks[i].Right);
            }
        }

        return error;
    }

    public WireError TryWriteTimestamps(uint value, uint echoReply)
    {
        var error = Reserve(TcpOptionValues.TimestampsLength, out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.Timestamps);
            BinaryPrimitives.WriteUInt32BigEndian(span[2..], value);
            BinaryPrimitives.WriteUInt32BigEndian(span[6..], echoReply);
        }

        return error;
    }

    /// <summary>TCP Fast Open: empty cookie (request) or 4..16 bytes, even.</summary>
    public WireError TryWriteFastOpen(scoped ReadOnlySpan<byte> cookie)
    {
        if (cookie.Length != 0 && (cookie.Length < 4 || cookie.Length > 16 || cookie.Length % 2 != 0))
        {
            return WireError.BadArgument;
        }

        return TryWriteRaw((byte)TcpOptionKind.FastOpen, cookie);
    }

    /// <summary>TCP MD5 signature with a 16-byte digest.</summary>
    public WireError TryWriteMd5(scoped ReadOnlySpan<byte> digest) =>
        digest.Length != 16 ? WireError.BadArgument : TryWriteRaw((byte)TcpOptionKind.Md5Signature, digest);

    /// <summary>TCP-AO: key id, next key id, MAC.</summary>
    public WireError TryWriteAuthentication(byte keyId, byte nextKeyId, scoped ReadOnlySpan<byte> mac)
    {
        var error = Reserve(4 + mac.Length, out var span);
        if (error == WireError.None)
        {
            WriteKindLength(span, TcpOptionKind.Authentication);
            span[2] = keyId;
            span[3] = nextKeyId;
            mac.CopyTo(span[4..]);
        }

        return error;
    }

    /// <summary>Any option of kind ≥ 2 given its data (what follows the length byte).</summary>
    public WireError TryWriteRaw(byte kind, scoped ReadOnlySpan<byte> data)
    {
        if (kind <= 1)
        {
            return WireError.BadArgument;
        }

        var error = Reserve(2 + data.Length, out var span);
        if (error == WireError.None)
        {
            span[0] = kind;
            span[1] = (byte)span.Length;
            data.CopyTo(span[2..]);
        }

        return error;
    }

    /// <summary>Copies a whole option (kind, length, data) as it is, e.g. one read by <see cref="TcpOptionReader"/>.</summary>
    public WireError TryWriteOption(scoped ReadOnlySpan<byte> option)
    {
        var error = Reserve(option.Length, out var span);
        if (error == WireError.None)
        {
            option.CopyTo(span);
        }

        return error;
    }

    /// <summary>Writes an MPTCP suboption (any of the subtype structs) without boxing.</summary>
    public WireError TryWriteMptcp<T>(in T option)
        where T : struct, IMptcpSuboption
    {
        var error = Reserve(option.Length, out var span);
        return error == WireError.None ? option.TryWrite(span, out _) : error;
    }

    public WireError TryWriteMptcp(in MptcpOption option)
    {
        var error = Reserve(option.Length, out var span);
        return error == WireError.None ? option.TryWrite(span, out _) : error;
    }

    /// <summary>Adds NOPs until the written length is a multiple of 4 (the data offset counts 32-bit words).</summary>
    public WireError TryPadWithNops()
    {
        var pad = (4 - (_position & 3)) & 3;
        var error = Reserve(pad, out var span);
        if (error == WireError.None)
        {
            span.Fill((byte)TcpOptionKind.Nop);
        }

        return error;
    }

    private WireError TryWriteSingle(TcpOptionKind kind)
    {
        var error = Reserve(1, out var span);
        if (error == WireError.None)
        {
            span[0] = (byte)kind;
        }

        return error;
    }

    private static void WriteKindLength(Span<byte> span, TcpOptionKind kind)
    {
        span[0] = (byte)kind;
        span[1] = (byte)span.Length;
    }

    private WireError Reserve(int length, out Span<byte> span)
    {
        span = default;
        if (_position + length > TcpHeader.MaxOptionsLength)
        {
            return WireError.OptionSpaceExceeded;
        }

        if (_position + length > _buffer.Length)
        {
            return WireError.BufferTooSmall;
        }

        span = _buffer.Slice(_position, length);
        _position += length;
        return WireError.None;
    }
}
