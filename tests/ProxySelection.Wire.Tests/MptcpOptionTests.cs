namespace ProxySelection.Wire.Tests;

/// <summary>Each subtype against real option bytes and the fields tshark gave for them (tests/vectors).</summary>
public class MptcpOptionTests
{
    private static MptcpOption Parse(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        Assert.That(MptcpOption.TryParse(bytes, out var option), Is.EqualTo(WireError.None));
        var written = new byte[40];
        Assert.That(option.TryWrite(written, out var length), Is.EqualTo(WireError.None));
        Assert.That(written[..length], Is.EqualTo(bytes), "parse then write reproduces the bytes");
        Assert.That(option.Length, Is.EqualTo(bytes.Length));
        return option;
    }

    [Test]
    public void MpCapable_V1Syn_NoKeyFlagH()
    {
        var c = Parse("1e040101").MpCapable;
        Assert.That((c.Form, c.Version, c.Flags, c.HasSenderKey), Is.EqualTo((MpCapableForm.NoKey, (byte)1, MpCapableFlags.HmacSha256, false)));
    }

    [Test]
    public void MpCapable_SynAck_SenderKey()
    {
        var c = Parse("1e0c01014c06274aa3d7dcbe").MpCapable;
        Assert.That((c.Form, c.SenderKey), Is.EqualTo((MpCapableForm.SenderKey, 5478109198272683198UL)));
    }

    [Test]
    public void MpCapable_Ack_BothKeys()
    {
        var c = Parse("1e14010155b047aa7350762b4c06274aa3d7dcbe").MpCapable;
        Assert.That((c.Form, c.SenderKey, c.ReceiverKey), Is.EqualTo((MpCapableForm.BothKeys, 6174513886529615403UL, 5478109198272683198UL)));
    }

    [Test]
    public void MpCapable_Data_KeysAndDataLevelLength()
    {
        var c = Parse("1e1601017b3e7f18185a2c0e9b5e1439fd423ea80064").MpCapable;
        Assert.That((c.Form, c.SenderKey, c.ReceiverKey, c.DataLevelLength, c.HasChecksum),
            Is.EqualTo((MpCapableForm.BothKeysDataLength, 8880675256685702158UL, 11195407962984300200UL, (ushort)100, false)));
    }

    [Test]
    public void MpCapable_DataWithChecksum_FlagsAH()
    {
        var c = Parse("1e180181dd62622c22704521328fd34d2fe6781707d0cfb5").MpCapable;
        Assert.That((c.Flags, c.SenderKey, c.ReceiverKey, c.DataLevelLength, c.Checksum),
            Is.EqualTo((MpCapableFlags.ChecksumRequired | MpCapableFlags.HmacSha256, 15952420771795584289UL, 3643362952035596311UL, (ushort)2000, (ushort)53173)));
    }

    [Test]
    public void MpCapable_V0Syn_SenderKey()
    {
        var c = Parse("1e0c00800102030405060708").MpCapable;
        Assert.That((c.Version, c.Form, c.Flags, c.SenderKey), Is.EqualTo(((byte)0, MpCapableForm.SenderKey, MpCapableFlags.ChecksumRequired, 0x0102030405060708UL)));
    }

    [Test]
    public void MpJoin_Syn_TokenAndNonce()
    {
        var j = Parse("1e0c1001339976efa75360d2").MpJoin;
        Assert.That((j.Form, j.Backup, j.AddressId, j.ReceiverToken, j.SenderNonce),
            Is.EqualTo((MpJoinForm.Syn, false, (byte)1, 865695471u, 2807259346u)));
    }

    [Test]
    public void MpJoin_SynAck_TruncatedHmacAndNonce()
    {
        var j = Parse("1e101001bbd0e787e6305306b3fc74cd").MpJoin;
        Assert.That((j.Form, j.AddressId, j.TruncatedHmac, j.SenderNonce),
            Is.EqualTo((MpJoinForm.SynAck, (byte)1, 13533571451116868358UL, 3019666637u)));
    }

    [Test]
    public void MpJoin_Ack_FullHmac()
    {
        var option = Parse("1e1810005a926e61820cbbcbfeb0eb5bd9f2ea492a08b4e7");
        ref readonly var j = ref option.MpJoin;
        Assert.That(j.Form, Is.EqualTo(MpJoinForm.Ack));
        Assert.That(j.Reserved, Is.EqualTo(0));
        Assert.That(Convert.ToHexStringLower(j.Hmac), Is.EqualTo("5a926e61820cbbcbfeb0eb5bd9f2ea492a08b4e7"));
    }

    [Test]
    public void MpJoin_SynBackup_BackupSet()
    {
        var j = Parse("1e0c1105000000010000000a").MpJoin;
        Assert.That((j.Backup, j.AddressId, j.Reserved), Is.EqualTo((true, (byte)5, (ushort)0)));
    }

    [Test]
    public void Dss_DataAck4Only()
    {
        var d = Parse("1e0820018cf502d2").Dss;
        Assert.That((d.Flags, d.HasDataAck, d.DataAckIs8Bytes, d.HasMapping, d.DataAck),
            Is.EqualTo((DssFlags.DataAckPresent, true, false, false, 2364867282UL)));
    }

    [Test]
    public void Dss_Ack4Dsn8Mapping()
    {
        var d = Parse("1e16200d80f5821712bce53f8cf502d2000000010bb8").Dss;
        Assert.That((d.DataAck, d.DataSequenceNumber, d.SubflowSequenceNumber, d.DataLevelLength, d.HasChecksum),
            Is.EqualTo((2163573271UL, 1350206049414873810UL, 1u, (ushort)3000, false)));
    }

    [Test]
    public void Dss_Ack8Only()
    {
        var d = Parse("1e0c200312bce53f8cf5085a").Dss;
        Assert.That((d.DataAckIs8Bytes, d.DataAck), Is.EqualTo((true, 1350206049414875226UL)));
    }

    [Test]
    public void Dss_Ack8Dsn8MappingWithChecksum()
    {
        var d = Parse("1e1c200f03a61c7806d0fda6a025c2b0fc83188f0000000107d02495").Dss;
        Assert.That((d.DataAck, d.DataSequenceNumber, d.SubflowSequenceNumber, d.DataLevelLength, d.HasChecksum, d.Checksum),
            Is.EqualTo((262928930083765670UL, 11539843685613246607UL, 1u, (ushort)2000, true, (ushort)9365)));
    }

    [Test]
    public void Dss_Ack4Dsn8MappingWithChecksum()
    {
        var d = Parse("1e18200d2b4011e91a57a33e14f7020c000007d107d0c015").Dss;
        Assert.That((d.DataAck, d.DataSequenceNumber, d.SubflowSequenceNumber, d.DataLevelLength, d.Checksum),
            Is.EqualTo((725619177UL, 1898165254994985484UL, 2001u, (ushort)2000, (ushort)49173)));
    }

    [Test]
    public void Dss_Dsn4MappingWithDataFin_NoDataAck()
    {
        var d = Parse("1e0e20140000000a000000000001").Dss;
        Assert.That((d.DataFin, d.HasDataAck, d.DsnIs8Bytes, d.DataSequenceNumber, d.DataLevelLength),
            Is.EqualTo((true, false, false, 10UL, (ushort)1)));
    }

    [Test]
    public void AddAddr_Ipv4WithHmac()
    {
        var a = Parse("1e103001c6120102cae12d7d08595de9").AddAddr;
        Assert.That((a.Echo, a.AddressId, a.IsIPv6, a.HasPort, a.TruncatedHmac), Is.EqualTo((false, (byte)1, false, false, 14619015880455577065UL)));
        Assert.That(a.Address.ToArray(), Is.EqualTo(new byte[] { 198, 18, 1, 2 }));
    }

    [Test]
    public void AddAddr_Ipv4Echo()
    {
        var a = Parse("1e083101c6120102").AddAddr;
        Assert.That((a.Echo, a.HasHmac, a.AddressId), Is.EqualTo((true, false, (byte)1)));
    }

    [Test]
    public void AddAddr_Ipv6WithPortAndHmac()
    {
        var option = Parse("1e1e300120010db800010000000000000000000246b416145fef7f50998e");
        ref readonly var a = ref option.AddAddr;
        Assert.That((a.IsIPv6, a.HasPort, a.Port, a.TruncatedHmac), Is.EqualTo((true, true, (ushort)18100, 1591002050606438798UL)));
        Assert.That(new System.Net.IPAddress(a.Address).ToString(), Is.EqualTo("2001:db8:1::2"));
    }

    [Test]
    public void AddAddr_Ipv6EchoWithPort()
    {
        var a = Parse("1e16310120010db800010000000000000000000246b4").AddAddr;
        Assert.That((a.Echo, a.IsIPv6, a.Port), Is.EqualTo((true, true, (ushort)18100)));
    }

    [Test]
    public void AddAddr_Ipv4EchoWithPort_Ipv6NoPortWithHmac()
    {
        Assert.That(Parse("1e0a3102c61201020050").AddAddr.Port, Is.EqualTo(80));
        Assert.That(Parse("1e1c300320010db80000000000000000000000010000000000000009").AddAddr.TruncatedHmac, Is.EqualTo(9));
    }

    [Test]
    public void RemoveAddr_OneAndSeveralIds()
    {
        Assert.That(Parse("1e044001").RemoveAddr.AddressIds.ToArray(), Is.EqualTo(new byte[] { 1 }));
        Assert.That(Parse("1e0640010203").RemoveAddr.AddressIds.ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }));
    }

    [Test]
    public void MpPrio_ShortAndWithAddressId()
    {
        var p = Parse("1e0351").MpPrio;
        Assert.That((p.Backup, p.HasAddressId), Is.EqualTo((true, false)));
        var q = Parse("1e045007").MpPrio;
        Assert.That((q.Backup, q.HasAddressId, q.AddressId), Is.EqualTo((false, true, (byte)7)));
    }

    [Test]
    public void MpFail_Dsn()
    {
        var f = Parse("1e0c600065322e5e861c3d97").MpFail;
        Assert.That((f.Reserved, f.DataSequenceNumber), Is.EqualTo(((ushort)0, 7291941730178055575UL)));
    }

    [Test]
    public void MpFastClose_ReceiverKey() =>
        Assert.That(Parse("1e0c700099ce31c5853222bc").MpFastClose.ReceiverKey, Is.EqualTo(11082850457418343100UL));

    [Test]
    public void MpTcpRst_NoFlagsReasonZero_AndAllFlags()
    {
        var r = Parse("1e048000").MpTcpRst;
        Assert.That((r.Flags, r.Reason), Is.EqualTo((MpTcpRstFlags.None, MpTcpRstReason.Unspecified)));
        var all = Parse("1e048f06").MpTcpRst;
        Assert.That((all.Flags, all.Reason), Is.EqualTo((MpTcpRstFlags.ReservedU | MpTcpRstFlags.ReservedV | MpTcpRstFlags.ReservedW
            | MpTcpRstFlags.Transient, MpTcpRstReason.MiddleboxInterference)));
    }

    [Test]
    public void MpExperimental_KeptRaw()
    {
        var option = Parse("1e07f5aabbccdd");
        ref readonly var e = ref option.MpExperimental;
        Assert.That((e.LowNibble, e.DataLength, MpExperimental.DataOffset), Is.EqualTo(((byte)5, 4, 3)));
        Assert.That(e.Data.ToArray(), Is.EqualTo(new byte[] { 0xaa, 0xbb, 0xcc, 0xdd }));
    }

    [TestCase("1e0500010203", Description = "MP_CAPABLE 6")]
    [TestCase("1e0d0101000000000000000000", Description = "MP_CAPABLE 13")]
    [TestCase("1e1501010000000000000000000000000000000000", Description = "MP_CAPABLE 21")]
    [TestCase("1e0d10010000000000000000ff", Description = "MP_JOIN 13")]
    [TestCase("1e141000000000000000000000000000000000ff", Description = "MP_JOIN 20")]
    [TestCase("1e0620010000", Description = "DSS A without full ack")]
    [TestCase("1e0a20018cf502d20000", Description = "DSS ack4 plus checksum without mapping")]
    [TestCase("1e0320", Description = "DSS 3")]
    [TestCase("1e103101c6120102cae12d7d08595de9", Description = "ADD_ADDR echo with HMAC length")]
    [TestCase("1e083001c6120102", Description = "ADD_ADDR no echo without HMAC")]
    [TestCase("1e0340", Description = "REMOVE_ADDR no ids")]
    [TestCase("1e055000ff", Description = "MP_PRIO 5")]
    [TestCase("1e0b600065322e5e861c3d", Description = "MP_FAIL 11")]
    [TestCase("1e0d700099ce31c5853222bc00", Description = "MP_FASTCLOSE 13")]
    [TestCase("1e0380", Description = "MP_TCPRST 3")]
    [TestCase("1e05800000", Description = "MP_TCPRST 5")]
    public void TryParse_LengthDoesNotFitSubtype_BadMptcpLength(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        bytes[1] = (byte)bytes.Length;
        Assert.That(MptcpOption.TryParse(bytes, out _), Is.EqualTo(WireError.BadMptcpLength));
    }

    [TestCase("1e04900000")]
    [TestCase("1e04e000")]
    public void TryParse_UndefinedSubtype_UnknownMptcpSubtype(string hex)
    {
        var bytes = Convert.FromHexString(hex);
        bytes[1] = (byte)bytes.Length;
        Assert.That(MptcpOption.TryParse(bytes, out _), Is.EqualTo(WireError.UnknownMptcpSubtype));
    }

    [Test]
    public void TryParse_LengthTwo_BadMptcpLength() =>
        Assert.That(MptcpOption.TryParse([30, 2], out _), Is.EqualTo(WireError.BadMptcpLength));

    [Test]
    public void TryParse_LengthByteDisagreesWithSpan_BadOptionLength() =>
        Assert.That(MptcpOption.TryParse([30, 5, 0x01, 0x01], out _), Is.EqualTo(WireError.BadOptionLength));

    [Test]
    public void TryParse_NotKind30_BadArgument() =>
        Assert.That(MptcpOption.TryParse([2, 4, 5, 0xb4], out _), Is.EqualTo(WireError.BadArgument));

    [Test]
    public void SubtypeParse_OtherSubtype_WrongSubtype() =>
        Assert.That(MpJoin.TryParse(Convert.FromHexString("1e040101"), out _), Is.EqualTo(WireError.WrongSubtype));

    [Test]
    public void Accessor_WrongSubtype_ThrowsWireException()
    {
        var option = MptcpOption.Parse(Convert.FromHexString("1e040101"));
        var ex = Assert.Throws<WireException>(() => _ = option.Dss.DataAck);
        Assert.That(ex!.Error, Is.EqualTo(WireError.WrongSubtype));
    }

    [Test]
    public void Parse_Malformed_ThrowsWireException()
    {
        var ex = Assert.Throws<WireException>(() => MptcpOption.Parse([30, 3, 0x90]));
        Assert.That(ex!.Error, Is.EqualTo(WireError.UnknownMptcpSubtype));
    }

    [Test]
    public void TryWrite_ShortBuffer_BufferTooSmall()
    {
        var option = new MpFail(1);
        Assert.That(option.TryWrite(new byte[11], out var written), Is.EqualTo(WireError.BufferTooSmall));
        Assert.That(written, Is.EqualTo(0));
    }

    [Test]
    public void Constructors_ValuesTheWireCannotCarry_ThrowWireException()
    {
        Assert.Throws<WireException>(() => _ = new Dss(DssFlags.DataAckPresent, dataAck: 1UL << 32));
        Assert.Throws<WireException>(() => _ = new Dss(DssFlags.MappingPresent, dataSequenceNumber: 1UL << 32));
        Assert.Throws<WireException>(() => _ = new Dss(DssFlags.DataAckPresent, hasChecksum: true));
        Assert.Throws<WireException>(() => _ = new MpCapable((MpCapableForm)5, 1, MpCapableFlags.None));
        Assert.Throws<WireException>(() => _ = new MpCapable(MpCapableForm.NoKey, 16, MpCapableFlags.None));
        Assert.Throws<WireException>(() => MpJoin.Ack(new byte[19]));
        Assert.Throws<WireException>(() => AddAddr.CreateEcho(1, new byte[5]));
        Assert.Throws<WireException>(() => _ = new RemoveAddr([]));
        Assert.Throws<WireException>(() => _ = new RemoveAddr(new byte[38]));
        Assert.Throws<WireException>(() => _ = new MpExperimental(16, []));
        Assert.Throws<WireException>(() => _ = new MpExperimental(0, new byte[38]));
    }

    [Test]
    public void TcpOptionWriter_MptcpStructs_WriteSameBytesAsTryWrite()
    {
        var buffer = new byte[40];
        var writer = new TcpOptionWriter(buffer);
        Assert.That(writer.TryWriteMptcp(new MpTcpRst(MpTcpRstFlags.Transient, MpTcpRstReason.LackOfResources)), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteMptcp(new MptcpOption(new MpPrio(true))), Is.EqualTo(WireError.None));
        Assert.That(writer.Written.ToArray(), Is.EqualTo(new byte[] { 30, 4, 0x81, 2, 30, 3, 0x51 }));
    }
}
