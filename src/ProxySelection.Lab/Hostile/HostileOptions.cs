using System.Buffers.Binary;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Lab.Hostile;

/// <summary>
/// TCP option bytes for hostile segments, written with the Wire codecs where a codec exists (MP_CAPABLE, MP_PROXY, MD5)
/// and raw where the point is a form no codec writes (an MP_PROXY of any length, experiment id or version).
/// <see cref="Concat"/> joins them and pads with NOPs to a multiple of 4.
/// </summary>
public static class HostileOptions
{
    /// <summary>The MP_CAPABLE a client's SYN carries (RFC 8684 v1, 4 bytes, HMAC-SHA256 flag).</summary>
    public static byte[] MpCapableSyn(byte version = 1) =>
        Mptcp(new MpCapable(MpCapableForm.NoKey, version, MpCapableFlags.HmacSha256));

    /// <summary>The MP_CAPABLE a server's SYN/ACK carries (12 bytes, the sender's key).</summary>
    public static byte[] MpCapableSynAck(ulong senderKey) =>
        Mptcp(new MpCapable(MpCapableForm.SenderKey, 1, MpCapableFlags.HmacSha256, senderKey));

    /// <summary>A well-formed MP_PROXY option (signed or not, as given).</summary>
    public static byte[] MpProxy(in MpProxyOption option)
    {
        var bytes = new byte[option.WireLength];
        MpProxyCodec.Write(bytes, option);
        return bytes;
    }

    /// <summary>
    /// Kind 30, subtype 0xF with <paramref name="version"/>, <paramref name="experimentId"/>, then <paramref name="fill"/>
    /// repeated: <paramref name="length"/> bytes (2..40) whose length byte says <paramref name="declaredLength"/> (default
    /// the same; larger makes an option that runs past the header). Bytes 4 and 5 are P=1, Claim, priority 8, proxy id 7.
    /// </summary>
    public static byte[] RawMpProxy(int length, byte experimentId = 0xA5, byte version = 1, byte fill = 0x5A, int? declaredLength = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, TcpHeader.MaxOptionsLength);
        var bytes = new byte[length];
        bytes.AsSpan().Fill(fill);
        bytes[0] = (byte)TcpOptionKind.Mptcp;
        bytes[1] = (byte)(declaredLength ?? length);
        if (length > 2)
        {
            bytes[2] = (byte)(0xF0 | (version & 0x0F));
        }

        if (length > 3)
        {
            bytes[3] = experimentId;
        }

        if (length > 5)
        {
            bytes[4] = 0x80 | (byte)MpProxyMessage.Claim << 4 | 8;
            bytes[5] = 7;
        }

        return bytes;
    }

    /// <summary>A TCP-MD5 signature option (kind 19, RFC 2385) with a fixed 16-byte digest.</summary>
    public static byte[] Md5Signature()
    {
        Span<byte> digest = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(digest, 0x0123456789ABCDEF);
        BinaryPrimitives.WriteUInt64BigEndian(digest[8..], 0xFEDCBA9876543210);
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        Check(writer.TryWriteMd5(digest));
        return writer.Written.ToArray();
    }

    /// <summary>MSS 1460, the option every real SYN carries first.</summary>
    public static byte[] Mss()
    {
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        Check(writer.TryWriteMss(1460));
        return writer.Written.ToArray();
    }

    /// <summary>The options one after another, NOP-padded to a multiple of 4; more than 40 bytes throws.</summary>
    public static byte[] Concat(params byte[][] options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        foreach (var option in options)
        {
            Check(writer.TryWriteOption(option));
        }

        Check(writer.TryPadWithNops());
        return writer.Written.ToArray();
    }

    private static byte[] Mptcp<T>(in T option)
        where T : struct, IMptcpSuboption
    {
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        Check(writer.TryWriteMptcp(option));
        return writer.Written.ToArray();
    }

    private static void Check(WireError error)
    {
        if (error != WireError.None)
        {
            throw new LabException($"building a hostile option failed: {error}");
        }
    }
}
