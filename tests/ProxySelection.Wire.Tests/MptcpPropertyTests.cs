using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Wire.Tests;

/// <summary>Round-trip properties for every MPTCP suboption reader/writer pair.</summary>
public class MptcpPropertyTests
{
    private static readonly Dictionary<MptcpSubtype, int[]> LegalLengths = new()
    {
        [MptcpSubtype.MpCapable] = [4, 12, 20, 22, 24],
        [MptcpSubtype.MpJoin] = [12, 16, 24],
        [MptcpSubtype.Dss] = [4, 8, 12, 14, 16, 18, 20, 22, 24, 26, 28],
        [MptcpSubtype.AddAddr] = [8, 10, 16, 18, 20, 22, 28, 30],
        [MptcpSubtype.RemoveAddr] = [.. Enumerable.Range(4, 37)],
        [MptcpSubtype.MpPrio] = [3, 4],
        [MptcpSubtype.MpFail] = [12],
        [MptcpSubtype.MpFastClose] = [12],
        [MptcpSubtype.MpTcpRst] = [4],
        [MptcpSubtype.MpExperimental] = [.. Enumerable.Range(3, 38)],
    };

    private static T RoundTrip<T>(T value, TryParse<T> parse)
        where T : struct, IMptcpSuboption
    {
        var buffer = new byte[40];
        Assert.That(value.TryWrite(buffer, out var written), Is.EqualTo(WireError.None));
        Assert.That(written, Is.EqualTo(value.Length));
        Assert.That(buffer[1], Is.EqualTo(written));
        Assert.That(parse(buffer.AsSpan(0, written), out var read), Is.EqualTo(WireError.None));
        Assert.That(MptcpOption.TryParse(buffer.AsSpan(0, written), out var union), Is.EqualTo(WireError.None));
        Assert.That(union.Subtype, Is.EqualTo(value.Subtype));
        return read;
    }

    private delegate WireError TryParse<T>(ReadOnlySpan<byte> option, out T value);

    [FsProperty(MaxTest = 500)]
    public void MpCapable_AnyFields_RoundTrip(byte formPick, byte version, byte flags, ulong senderKey, ulong receiverKey,
        ushort dataLevelLength, ushort checksum)
    {
        var form = (MpCapableForm)LegalLengths[MptcpSubtype.MpCapable][formPick % 5];
        var value = new MpCapable(form, (byte)(version & 0x0F), (MpCapableFlags)flags, senderKey, receiverKey, dataLevelLength, checksum);
        Assert.That(RoundTrip(value, MpCapable.TryParse), Is.EqualTo(value));
    }

    [FsProperty(MaxTest = 500)]
    public void MpJoin_AnyFields_RoundTrip(byte formPick, bool backup, byte addressId, uint token, uint nonce, ulong truncatedHmac, Guid a, uint b)
    {
        var hmac = new byte[20];
        a.TryWriteBytes(hmac);
        BitConverter.TryWriteBytes(hmac.AsSpan(16), b);
        var value = (formPick % 3) switch
        {
            0 => MpJoin.Syn(backup, addressId, token, nonce),
            1 => MpJoin.SynAck(backup, addressId, truncatedHmac, nonce),
            _ => MpJoin.Ack(hmac),
        };
        var read = RoundTrip(value, MpJoin.TryParse);
        Assert.That(read, Is.EqualTo(value));
        Assert.That(read.Hmac.SequenceEqual(value.Hmac), Is.True);
    }

    [FsProperty(MaxTest = 1000)]
    public void Dss_AnyFlagCombination_RoundTrip(byte flagBits, ulong dataAck, ulong dsn, uint ssn, ushort dataLevelLength, bool checksumPresent, ushort checksum)
    {
        var flags = (DssFlags)(flagBits & 0x1F);
        var hasChecksum = checksumPresent && (flags & DssFlags.MappingPresent) != 0;
        var value = new Dss(
            flags,
            (flags & DssFlags.DataAck8) != 0 ? dataAck : (uint)dataAck,
            (flags & DssFlags.Dsn8) != 0 ? dsn : (uint)dsn,
            ssn,
            dataLevelLength,
            hasChecksum,
            checksum);
        var read = RoundTrip(value, Dss.TryParse);
        Assert.That(read, Is.EqualTo(value));
        Assert.That(read.Length, Is.EqualTo(Dss.ExpectedLength(flags) + (hasChecksum ? 2 : 0)));
    }

    [FsProperty(MaxTest = 500)]
    public void AddAddr_AnyShape_RoundTrip(bool ipv6, Guid address, byte addressId, bool echo, bool hasPort, ushort port, ulong hmac)
    {
        var bytes = address.ToByteArray().AsSpan(0, ipv6 ? 16 : 4).ToArray();
        ushort? maybePort = hasPort ? port : null;
        var value = echo ? AddAddr.CreateEcho(addressId, bytes, maybePort) : AddAddr.Announce(addressId, bytes, hmac, maybePort);
        var read = RoundTrip(value, AddAddr.TryParse);
        Assert.That(read, Is.EqualTo(value));
        Assert.That(read.Address.ToArray(), Is.EqualTo(bytes));
        Assert.That(read.Length, Is.EqualTo(4 + bytes.Length + (hasPort ? 2 : 0) + (echo ? 0 : 8)));
    }

    [FsProperty(MaxTest = 300)]
    public void RemoveAddr_AnyIds_RoundTrip(byte[] ids)
    {
        var list = ids is { Length: > 0 } ? ids.AsSpan(0, Math.Min(ids.Length, RemoveAddr.MaxIds)).ToArray() : [0];
        var read = RoundTrip(new RemoveAddr(list), RemoveAddr.TryParse);
        Assert.That(read.AddressIds.ToArray(), Is.EqualTo(list));
    }

    [FsProperty(MaxTest = 200)]
    public void MpPrio_AnyFields_RoundTrip(bool backup, bool hasAddressId, byte addressId)
    {
        var value = new MpPrio(backup, hasAddressId ? addressId : null);
        Assert.That(RoundTrip(value, MpPrio.TryParse), Is.EqualTo(value));
    }

    [FsProperty(MaxTest = 200)]
    public void MpFail_AnyDsn_RoundTrip(ulong dsn)
    {
        var value = new MpFail(dsn);
        Assert.That(RoundTrip(value, MpFail.TryParse), Is.EqualTo(value));
    }

    [FsProperty(MaxTest = 200)]
    public void MpFastClose_AnyKey_RoundTrip(ulong key)
    {
        var value = new MpFastClose(key);
        Assert.That(RoundTrip(value, MpFastClose.TryParse), Is.EqualTo(value));
    }

    [FsProperty(MaxTest = 200)]
    public void MpTcpRst_AnyFlagsAndReason_RoundTrip(byte flags, byte reason)
    {
        var value = new MpTcpRst((MpTcpRstFlags)(flags & 0x0F), (MpTcpRstReason)reason);
        Assert.That(RoundTrip(value, MpTcpRst.TryParse), Is.EqualTo(value));
    }

    [FsProperty(MaxTest = 300)]
    public void MpExperimental_AnyData_RoundTrip(byte nibble, byte[] data)
    {
        var payload = data is null ? [] : data.AsSpan(0, Math.Min(data.Length, 37)).ToArray();
        var value = new MpExperimental((byte)(nibble & 0x0F), payload);
        var read = RoundTrip(value, MpExperimental.TryParse);
        Assert.That(read, Is.EqualTo(value));
        Assert.That(read.Data.ToArray(), Is.EqualTo(payload));
    }

    /// <summary>Any bytes of a legal length for the subtype (reserved bits included) parse and write back identically.</summary>
    [FsProperty(MaxTest = 3000)]
    public bool AnyBytesOfLegalLength_ParseThenWrite_Identical(byte subtypePick, byte lengthPick, byte[] content)
    {
        var subtypes = LegalLengths.Keys.ToArray();
        var subtype = subtypes[subtypePick % subtypes.Length];
        var lengths = LegalLengths[subtype];
        var length = lengths[lengthPick % lengths.Length];
        var option = new byte[length];
        content?.AsSpan(0, Math.Min(content.Length, length)).CopyTo(option);
        option[0] = 30;
        option[1] = (byte)length;
        option[2] = (byte)(((int)subtype << 4) | (option[2] & 0x0F));
        if (subtype == MptcpSubtype.AddAddr)
        {
            // E picks whether an HMAC is there; make it agree with the chosen length.
            var withHmac = length is 16 or 18 or 28 or 30;
            option[2] = (byte)((option[2] & 0xFE) | (withHmac ? 0 : 1));
        }

        if (subtype == MptcpSubtype.Dss)
        {
            option[3] = DssFlagsFor(length, option[3]);
        }

        if (MptcpOption.TryParse(option, out var parsed) != WireError.None)
        {
            return false;
        }

        var written = new byte[40];
        return parsed.TryWrite(written, out var count) == WireError.None && written.AsSpan(0, count).SequenceEqual(option);
    }

    /// <summary>Whatever the bytes, parsing returns a status (never throws), and a success writes back the same bytes.</summary>
    [FsProperty(MaxTest = 5000)]
    public bool ArbitraryBytes_TryParse_StatusOnlyAndIdentityOnSuccess(byte[] content)
    {
        var option = content ?? [];
        if (option.Length >= 2)
        {
            option[0] = 30;
            option[1] = (byte)option.Length;
        }

        if (MptcpOption.TryParse(option, out var parsed) != WireError.None)
        {
            return true;
        }

        var written = new byte[40];
        return parsed.TryWrite(written, out var count) == WireError.None && written.AsSpan(0, count).SequenceEqual(option);
    }

    /// <summary>A flags byte (random reserved bits kept) whose A/a/M/m give <paramref name="length"/>, with or without checksum.</summary>
    private static byte DssFlagsFor(int length, byte random)
    {
        for (var bits = 0; bits < 32; bits++)
        {
            var candidate = (byte)((random & 0xE0) | ((bits + random) & 0x1F));
            var flags = (DssFlags)candidate;
            var expected = Dss.ExpectedLength(flags);
            if (expected == length || (expected + 2 == length && (flags & DssFlags.MappingPresent) != 0))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException($"no DSS flags give length {length}");
    }
}
