using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace ProxySelection.Wire;

/// <summary>MP_JOIN shapes; the value is the option length.</summary>
public enum MpJoinForm : byte
{
    /// <summary>SYN: B, address id, receiver's token, sender's nonce.</summary>
    Syn = 12,
    /// <summary>SYN/ACK: B, address id, truncated HMAC, sender's nonce.</summary>
    SynAck = 16,
    /// <summary>Third ACK: full 160-bit HMAC.</summary>
    Ack = 24,
}

/// <summary>MP_JOIN (subtype 0x1, RFC 8684 section 3.2).</summary>
public readonly record struct MpJoin : IMptcpSuboption
{
    public const int HmacLength = 20;

    private readonly byte _nibble;
    private readonly byte _byte3;
    private readonly Bytes20 _hmac;

    private MpJoin(MpJoinForm form, byte nibble, byte byte3, uint receiverToken, uint senderNonce, ulong truncatedHmac,
        ReadOnlySpan<byte> hmac)
    {
        Form = form;
        _nibble = (byte)(nibble & 0x0F);
        _byte3 = byte3;
        ReceiverToken = receiverToken;
        SenderNonce = senderNonce;
        TruncatedHmac = truncatedHmac;
        hmac.CopyTo(_hmac);
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpJoin;

    public int Length => (int)Form;

    public MpJoinForm Form { get; }

    /// <summary>B: the sender wants this subflow as backup (SYN and SYN/ACK).</summary>
    public bool Backup => Form != MpJoinForm.Ack && (_nibble & 0x01) != 0;

    /// <summary>Address id (SYN and SYN/ACK; 0 for ACK).</summary>
    public byte AddressId => Form != MpJoinForm.Ack ? _byte3 : (byte)0;

    /// <summary>Reserved bits as sent: 3 bits for SYN and SYN/ACK, 12 bits for ACK.</summary>
    public ushort Reserved => Form == MpJoinForm.Ack ? (ushort)((_nibble << 8) | _byte3) : (ushort)(_nibble >> 1);

    /// <summary>Receiver's token (SYN).</summary>
    public uint ReceiverToken { get; }

    /// <summary>Sender's random number (SYN and SYN/ACK).</summary>
    public uint SenderNonce { get; }

    /// <summary>Leftmost 64 bits of the HMAC (SYN/ACK).</summary>
    public ulong TruncatedHmac { get; }

    /// <summary>The 160-bit HMAC (ACK); 20 zero bytes otherwise.</summary>
    [UnscopedRef]
    public ReadOnlySpan<byte> Hmac => _hmac;

    public static MpJoin Syn(bool backup, byte addressId, uint receiverToken, uint senderNonce) =>
        new(MpJoinForm.Syn, backup ? (byte)1 : (byte)0, addressId, receiverToken, senderNonce, 0, default);

    public static MpJoin SynAck(bool backup, byte addressId, ulong truncatedHmac, uint senderNonce) =>
        new(MpJoinForm.SynAck, backup ? (byte)1 : (byte)0, addressId, 0, senderNonce, truncatedHmac, default);

    /// <summary>The third ACK; <paramref name="hmac"/> must be 20 bytes.</summary>
    public static MpJoin Ack(ReadOnlySpan<byte> hmac)
    {
        if (hmac.Length != HmacLength)
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        return new MpJoin(MpJoinForm.Ack, 0, 0, 0, 0, 0, hmac);
    }

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpJoin value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.MpJoin);
        if (error != WireError.None)
        {
            return error;
        }

        var nibble = (byte)(option[2] & 0x0F);
        switch (option.Length)
        {
            case 12:
                value = new MpJoin(MpJoinForm.Syn, nibble, option[3], BinaryPrimitives.ReadUInt32BigEndian(option[4..]),
                    BinaryPrimitives.ReadUInt32BigEndian(option[8..]), 0, default);
                return WireError.None;
            case 16:
                value = new MpJoin(MpJoinForm.SynAck, nibble, option[3], 0, BinaryPrimitives.ReadUInt32BigEndian(option[12..]),
                    BinaryPrimitives.ReadUInt64BigEndian(option[4..]), default);
                return WireError.None;
            case 24:
                value = new MpJoin(MpJoinForm.Ack, nibble, option[3], 0, 0, 0, option.Slice(4, HmacLength));
                return WireError.None;
            default:
                return WireError.BadMptcpLength;
        }
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, _nibble);
        destination[3] = _byte3;
        switch (Form)
        {
            case MpJoinForm.Syn:
                BinaryPrimitives.WriteUInt32BigEndian(destination[4..], ReceiverToken);
                BinaryPrimitives.WriteUInt32BigEndian(destination[8..], SenderNonce);
                break;
            case MpJoinForm.SynAck:
                BinaryPrimitives.WriteUInt64BigEndian(destination[4..], TruncatedHmac);
                BinaryPrimitives.WriteUInt32BigEndian(destination[12..], SenderNonce);
                break;
            default:
                ((ReadOnlySpan<byte>)_hmac).CopyTo(destination[4..]);
                break;
        }

        written = Length;
        return WireError.None;
    }
}
