using System.Runtime.CompilerServices;

namespace ProxySelection.Wire;

/// <summary>MPTCP option subtypes (RFC 8684 section 7.2).</summary>
public enum MptcpSubtype : byte
{
    MpCapable = 0x0,
    MpJoin = 0x1,
    Dss = 0x2,
    AddAddr = 0x3,
    RemoveAddr = 0x4,
    MpPrio = 0x5,
    MpFail = 0x6,
    MpFastClose = 0x7,
    MpTcpRst = 0x8,
    MpExperimental = 0xF,
}

/// <summary>A parsed MPTCP suboption that can write itself back (kind 30, length and all).</summary>
public interface IMptcpSuboption
{
    MptcpSubtype Subtype { get; }

    /// <summary>The whole option length on the wire, kind and length byte included.</summary>
    int Length { get; }

    /// <summary>Writes the option; <see cref="WireError.BufferTooSmall"/> when <paramref name="destination"/> is shorter than <see cref="Length"/>.</summary>
    WireError TryWrite(Span<byte> destination, out int written);
}

internal static class MptcpCodec
{
    public const byte Kind = 30;

    /// <summary>Largest MPTCP option: the whole 40-byte option space.</summary>
    public const int MaxLength = 40;

    /// <summary>Checks kind, length byte against the span, minimum length and subtype.</summary>
    public static WireError CheckHeader(ReadOnlySpan<byte> option, MptcpSubtype subtype)
    {
        var error = CheckKindAndLength(option);
        if (error != WireError.None)
        {
            return error;
        }

        return (MptcpSubtype)(option[2] >> 4) == subtype ? WireError.None : WireError.WrongSubtype;
    }

    public static WireError CheckKindAndLength(ReadOnlySpan<byte> option)
    {
        if (option.Length < 2)
        {
            return WireError.Truncated;
        }

        if (option[0] != Kind)
        {
            return WireError.BadArgument;
        }

        if (option[1] != option.Length)
        {
            return WireError.BadOptionLength;
        }

        return option.Length < 3 ? WireError.BadMptcpLength : WireError.None;
    }

    public static void WriteHeader(Span<byte> destination, int length, MptcpSubtype subtype, int lowNibble)
    {
        destination[0] = Kind;
        destination[1] = (byte)length;
        destination[2] = (byte)(((int)subtype << 4) | (lowNibble & 0x0F));
    }
}

/// <summary>20 bytes inline (the MP_JOIN ACK HMAC).</summary>
[InlineArray(20)]
internal struct Bytes20 : IEquatable<Bytes20>
{
    private byte _element;

    public readonly bool Equals(Bytes20 other) => ((ReadOnlySpan<byte>)this).SequenceEqual(other);

    public override readonly bool Equals(object? obj) => obj is Bytes20 other && Equals(other);

    public override readonly int GetHashCode()
    {
        var hash = new HashCode();
        hash.AddBytes(this);
        return hash.ToHashCode();
    }
}

/// <summary>16 bytes inline (an IPv4 or IPv6 address).</summary>
[InlineArray(16)]
internal struct Bytes16 : IEquatable<Bytes16>
{
    private byte _element;

    public readonly bool Equals(Bytes16 other) => ((ReadOnlySpan<byte>)this).SequenceEqual(other);

    public override readonly bool Equals(object? obj) => obj is Bytes16 other && Equals(other);

    public override readonly int GetHashCode()
    {
        var hash = new HashCode();
        hash.AddBytes(this);
        return hash.ToHashCode();
    }
}

/// <summary>37 bytes inline: the most an option can carry after kind, length and subtype byte.</summary>
[InlineArray(37)]
internal struct Bytes37 : IEquatable<Bytes37>
{
    private byte _element;

    public readonly bool Equals(Bytes37 other) => ((ReadOnlySpan<byte>)this).SequenceEqual(other);

    public override readonly bool Equals(object? obj) => obj is Bytes37 other && Equals(other);

    public override readonly int GetHashCode()
    {
        var hash = new HashCode();
        hash.AddBytes(this);
        return hash.ToHashCode();
    }
}
