using FsCheckProperty = FsCheck.NUnit.PropertyAttribute;
using ProxySelection.Wire.MpProxy;

// FsCheck.NUnit's [Property] supplies the arguments; the NUnit analyzer cannot see that.
#pragma warning disable NUnit1027

namespace ProxySelection.Wire.Tests.MpProxy;

public class MpProxyCodecTests
{
    private static MpProxyMessage Kind(byte raw) => (MpProxyMessage)(1 + (raw % 5));

    [FsCheckProperty(MaxTest = 2000)]
    public bool WriteThenRead_ShortAndLongForms_RoundTrip(byte rawKind, byte priority, byte proxyId, byte keyId, bool atCapacity, ulong tag, bool longForm)
    {
        var option = longForm
            ? MpProxyOption.Long(Kind(rawKind), (byte)(priority & 0xF), proxyId, atCapacity, keyId, tag)
            : MpProxyOption.Short(Kind(rawKind), (byte)(priority & 0xF), proxyId, tag & 0xFFFF);
        Span<byte> buffer = stackalloc byte[40];
        int written = MpProxyCodec.Write(buffer, option);
        var status = MpProxyCodec.TryRead(buffer[..written], out var read);
        return written == option.WireLength && status == MpProxyStatus.Ok && read == option;
    }

    [FsCheckProperty(MaxTest = 5000)]
    public bool TryRead_AnyBytes_NeverThrowsAndOkMeansExactRewrite(byte[] bytes, bool forceHeader)
    {
        if (forceHeader && bytes.Length >= 4)
        {
            // Steer half the cases past the header checks so the field decoding is exercised too.
            bytes[0] = 30;
            bytes[1] = (byte)(bytes[1] % 3 == 0 ? 4 : bytes[1] % 3 == 1 ? 8 : 16);
            bytes[2] = 0xF1;
            bytes[3] = 0xA5;
        }

        var status = MpProxyCodec.TryRead(bytes, out var read);
        if (status != MpProxyStatus.Ok)
        {
            return true;
        }

        var again = new byte[read.WireLength];
        MpProxyCodec.Write(again, read);
        return bytes.AsSpan(0, read.WireLength).SequenceEqual(again);
    }

    [Test]
    public void Write_Presence_IsFourBytesSubtypeFVersion1ExperimentA5()
    {
        var bytes = MpProxyTestData.Bytes(MpProxyOption.Presence());
        // Byte 2 is 0xF1: subtype 0xF, version 1; version 0 is never assigned (spec §5.3).
        Assert.That(bytes, Is.EqualTo(new byte[] { 30, 4, 0xF1, 0xA5 }));
    }

    [Test]
    public void Write_Long_PlacesEveryFieldWhereTheSpecSays()
    {
        var option = MpProxyOption.Long(MpProxyMessage.Defer, 9, 0x42, atCapacity: true, keyId: 7, tag: 0x0102030405060708);
        var bytes = MpProxyTestData.Bytes(option);
        Assert.That(bytes, Is.EqualTo(new byte[] { 30, 16, 0xF1, 0xA5, 0x80 | (3 << 4) | 9, 0x42, 7, 0x80, 1, 2, 3, 4, 5, 6, 7, 8 }));
    }

    [Test]
    public void Write_Short_PlacesEveryFieldWhereTheSpecSays()
    {
        var option = MpProxyOption.Short(MpProxyMessage.Claim, 15, 0x07, tag: 0xBEEF);
        var bytes = MpProxyTestData.Bytes(option);
        Assert.That(bytes, Is.EqualTo(new byte[] { 30, 8, 0xF1, 0xA5, 0x80 | (2 << 4) | 15, 0x07, 0xBE, 0xEF }));
    }

    [Test]
    public void Write_DestinationTooSmall_ThrowsWireException()
    {
        var option = MpProxyOption.Long(MpProxyMessage.Probe, 1, 1);
        var ex = Assert.Throws<WireException>(() => MpProxyCodec.Write(new byte[15], option));
        Assert.That(ex!.Error, Is.EqualTo(WireError.OptionSpaceExceeded));
    }

    [Test]
    public void Write_DefaultOption_ThrowsWireException()
    {
        Assert.Throws<WireException>(() => MpProxyCodec.Write(new byte[16], default));
    }

    [TestCase(new byte[] { })]
    [TestCase(new byte[] { 30 })]
    [TestCase(new byte[] { 30, 16 })]
    [TestCase(new byte[] { 30, 16, 0xF1, 0xA5, 0x91, 1, 1, 0 })]
    [TestCase(new byte[] { 30, 8, 0xF1, 0xA5, 0x91, 1, 0xAA })]
    [TestCase(new byte[] { 30, 4, 0xF1 })]
    public void TryRead_TruncatedOption_IsTruncated(byte[] bytes)
    {
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.Truncated));
    }

    [TestCase((byte)0)]
    [TestCase((byte)3)]
    [TestCase((byte)5)]
    [TestCase((byte)12)]
    [TestCase((byte)20)]
    [TestCase((byte)40)]
    public void TryRead_LengthOtherThan4Or8Or16_IsBadLength(byte length)
    {
        var bytes = new byte[44];
        bytes[0] = 30;
        bytes[1] = length;
        bytes[2] = 0xF1;
        bytes[3] = 0xA5;
        bytes[4] = 0x91;
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.BadLength));
    }

    [Test]
    public void TryRead_OversizedOption_IsBadLengthEvenWhenSignedPrefixIsValid()
    {
        // A valid signed long form with its length byte grown to 20 and 4 junk bytes appended.
        var bytes = MpProxyTestData.Bytes(MpProxyTestData.Signed(MpProxyOption.Long(MpProxyMessage.Probe, 3, 9), MpProxyTestData.SynV4));
        var oversized = bytes.Concat(new byte[] { 1, 2, 3, 4 }).ToArray();
        oversized[1] = 20;
        Assert.That(MpProxyCodec.TryRead(oversized, out _), Is.EqualTo(MpProxyStatus.BadLength));
    }

    [TestCase((byte)0xF0)]
    [TestCase((byte)0xF2)]
    [TestCase((byte)0xFF)]
    public void TryRead_UnknownVersion_IsUnknownVersion(byte subtypeVersion)
    {
        var bytes = MpProxyTestData.Bytes(MpProxyOption.Short(MpProxyMessage.Claim, 1, 1));
        bytes[2] = subtypeVersion;
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.UnknownVersion));
    }

    [Test]
    public void TryRead_OtherExperimentId_IsUnknownExperiment()
    {
        var bytes = MpProxyTestData.Bytes(MpProxyOption.Long(MpProxyMessage.Probe, 1, 1));
        bytes[3] = 0x5A;
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.UnknownExperiment));
    }

    [TestCase(0)]
    [TestCase(6)]
    [TestCase(7)]
    public void TryRead_UnassignedMessageKind_IsUnknownMessage(int kind)
    {
        foreach (var form in new[] { MpProxyOption.Short(MpProxyMessage.Claim, 1, 1), MpProxyOption.Long(MpProxyMessage.Claim, 1, 1) })
        {
            var bytes = MpProxyTestData.Bytes(form);
            bytes[4] = (byte)(0x80 | (kind << 4) | 1);
            Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.UnknownMessage), $"length {form.WireLength}");
        }
    }

    [Test]
    public void TryRead_ProxyFlagClear_IsNotFromProxy()
    {
        var bytes = MpProxyTestData.Bytes(MpProxyOption.Short(MpProxyMessage.Claim, 1, 1));
        bytes[4] &= 0x7F;
        Assert.Multiple(() =>
        {
            Assert.That(MpProxyCodec.TryRead(bytes, out var read), Is.EqualTo(MpProxyStatus.NotFromProxy));
            Assert.That(read.ProxyFlag, Is.False);
        });
    }

    [Test]
    public void TryRead_OtherMptcpSubtype_IsNotMpProxy()
    {
        // MP_CAPABLE v1 on a SYN, from the kernel: subtype 0, version 1.
        Assert.That(MpProxyCodec.TryRead(new byte[] { 30, 4, 0x01, 0x01 }, out _), Is.EqualTo(MpProxyStatus.NotMpProxy));
    }

    [Test]
    public void TryRead_OtherTcpOption_IsNotMptcp()
    {
        Assert.That(MpProxyCodec.TryRead(new byte[] { 2, 4, 0x05, 0xB4 }, out _), Is.EqualTo(MpProxyStatus.NotMptcp));
    }

    [Test]
    public void TryFind_KernelSynOptionsPlusMpProxy_FindsItAtItsOffset()
    {
        var mpProxy = MpProxyTestData.Bytes(MpProxyOption.Long(MpProxyMessage.Probe, 2, 5, tag: 0x1122334455667788));
        // MSS, SACK_PERM, TS, NOP, WS, MP_CAPABLE v1 SYN (as Linux sends them), then MP_PROXY.
        byte[] kernel = [2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7, 30, 4, 0x01, 0x01];
        var options = kernel.Concat(mpProxy).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(options, Has.Length.EqualTo(40));
            Assert.That(MpProxyCodec.TryFind(options, out var found, out int offset), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That(offset, Is.EqualTo(24));
            Assert.That(found.Tag, Is.EqualTo(0x1122334455667788UL));
        });
    }

    [Test]
    public void TryFind_NoMpProxy_IsNotPresent()
    {
        byte[] options = [2, 4, 0x05, 0xB4, 1, 1, 4, 2, 30, 4, 0x01, 0x01, 0];
        Assert.That(MpProxyCodec.TryFind(options, out _, out int offset), Is.EqualTo(MpProxyStatus.NotPresent));
        Assert.That(offset, Is.EqualTo(-1));
    }

    [Test]
    public void TryFind_TwoMpProxyOptions_IsDuplicate()
    {
        var one = MpProxyTestData.Bytes(MpProxyOption.Short(MpProxyMessage.Claim, 1, 1));
        Assert.That(MpProxyCodec.TryFind(one.Concat(one).ToArray(), out _, out _), Is.EqualTo(MpProxyStatus.Duplicate));
    }

    [Test]
    public void TryFind_OptionLengthRunsPastEnd_IsMalformedOptionList()
    {
        Assert.That(MpProxyCodec.TryFind(new byte[] { 1, 30, 16, 0xF1, 0xA5 }, out _, out _), Is.EqualTo(MpProxyStatus.MalformedOptionList));
        Assert.That(MpProxyCodec.TryFind(new byte[] { 2, 0, 0, 0 }, out _, out _), Is.EqualTo(MpProxyStatus.MalformedOptionList));
    }

    [Test]
    public void TryFind_OnlyAnotherExperimentsSubtypeF_IsNotPresent()
    {
        byte[] options = [1, 1, 30, 4, 0xF1, 0x77];
        Assert.That(MpProxyCodec.TryFind(options, out _, out int offset), Is.EqualTo(MpProxyStatus.NotPresent));
        Assert.That(offset, Is.EqualTo(-1));
    }

    // Another experiment's subtype-0xF option of any length and version (spec §5.6: skipped, whatever its layout).
    private static IEnumerable<byte[]> ForeignExperimentOptions()
    {
        yield return [30, 4, 0xF1, 0x77];
        yield return [30, 5, 0xF2, 0x5A, 0];
        yield return [30, 7, 0xF0, 0x00, 1, 2, 3];
        yield return [30, 8, 0xF1, 0xA4, 0x91, 1, 2, 3];
        yield return [30, 12, 0xF9, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        yield return [30, 3, 0xF1]; // too short to carry an experiment id: not MP_PROXY either
    }

    [TestCaseSource(nameof(ForeignExperimentOptions))]
    public void TryFind_ForeignSubtypeFBesideMpProxy_SkippedInEitherOrder(byte[] foreign)
    {
        var mpProxy = MpProxyTestData.Bytes(MpProxyOption.Long(MpProxyMessage.Probe, 2, 5, tag: 0x1122334455667788));
        Assert.Multiple(() =>
        {
            Assert.That(MpProxyCodec.TryFind([.. foreign, .. mpProxy], out var after, out int afterOffset), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That((after.Tag, afterOffset), Is.EqualTo((0x1122334455667788UL, foreign.Length)));
            Assert.That(MpProxyCodec.TryFind([.. mpProxy, .. foreign], out var before, out int beforeOffset), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That((before.Tag, beforeOffset), Is.EqualTo((0x1122334455667788UL, 0)));
        });
    }

    [TestCase((byte)3)]
    [TestCase((byte)5)]
    [TestCase((byte)12)]
    public void TryRead_ForeignExperimentWithOddLength_IsUnknownExperimentNotBadLength(byte length)
    {
        var bytes = new byte[16];
        bytes[0] = 30;
        bytes[1] = length;
        bytes[2] = 0xF1;
        bytes[3] = 0x5A;
        var expected = length < 4 ? MpProxyStatus.BadLength : MpProxyStatus.UnknownExperiment;
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(expected));
    }

    [Test]
    public void TryRead_ForeignExperimentWithOtherVersion_IsUnknownExperimentNotUnknownVersion()
    {
        var bytes = MpProxyTestData.Bytes(MpProxyOption.Short(MpProxyMessage.Claim, 1, 1));
        bytes[2] = 0xF3;
        bytes[3] = 0x5A;
        Assert.That(MpProxyCodec.TryRead(bytes, out _), Is.EqualTo(MpProxyStatus.UnknownExperiment));
    }

    [Test]
    public void TryFind_OurExperimentOfUnknownVersionBesideV1_IsSkippedAndV1Read()
    {
        // Spec §5.6: another version is "not MP_PROXY version 1": skipped, so a sender in transition sending v2 beside v1
        // keeps its v1 signal; a v2 option alone is no signal; only two v1 options are a Duplicate.
        var v1 = MpProxyTestData.Bytes(MpProxyOption.Short(MpProxyMessage.Claim, 1, 1));
        var v2 = (byte[])v1.Clone();
        v2[2] = 0xF2;
        v2[1] = 12; // another version may have another layout
        v2 = [.. v2, 0, 0, 0, 0];
        Assert.Multiple(() =>
        {
            Assert.That(MpProxyCodec.TryFind([.. v2, .. v1], out var found, out _), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That(found.ProxyId, Is.EqualTo(1));
            Assert.That(MpProxyCodec.TryFind([.. v1, .. v2], out _, out _), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That(MpProxyCodec.TryFind(v2, out _, out _), Is.EqualTo(MpProxyStatus.NotPresent));
            Assert.That(MpProxyCodec.TryRead(v2, out _), Is.EqualTo(MpProxyStatus.UnknownVersion));
            Assert.That(MpProxyCodec.TryFind([.. v1, .. v1], out _, out _), Is.EqualTo(MpProxyStatus.Duplicate));
        });
    }

    [FsCheckProperty(MaxTest = 2000)]
    public bool TryFind_ForeignSubtypeFInsertedAnywhere_ChangesNothing(byte position, byte experiment, byte version, byte extra)
    {
        if (experiment == MpProxyOption.ExperimentId)
        {
            experiment = 0x5A;
        }

        // MSS, SACK_PERM, NOP, WS, then MP_PROXY (long), with a foreign 0xF option of 4..11 bytes slid in somewhere.
        byte[] head = [2, 4, 0x05, 0xB4, 4, 2, 1, 3, 3, 7];
        var mpProxy = MpProxyTestData.Bytes(MpProxyOption.Long(MpProxyMessage.Claim, 1, 9, tag: 42));
        var foreign = new byte[4 + (extra % 8)];
        foreign[0] = 30;
        foreign[1] = (byte)foreign.Length;
        foreign[2] = (byte)(0xF0 | (version & 0x0F));
        foreign[3] = experiment;
        byte[][] parts = [head[..4], head[4..6], head[6..10], mpProxy];
        int at = position % (parts.Length + 1);
        var options = parts.Take(at).Append(foreign).Concat(parts.Skip(at)).SelectMany(p => p).ToArray();
        return MpProxyCodec.TryFind(options, out var found, out _) == MpProxyStatus.Ok && found.Tag == 42 && found.ProxyId == 9;
    }

    // Spec §5.1: each segment type carries exactly one form, and each message a fixed set of segments.
    [TestCase(MpProxySegment.MpCapableSyn, 16, MpProxyMessage.Probe, true)]
    [TestCase(MpProxySegment.MpCapableSyn, 16, MpProxyMessage.Upgrade, true)]
    [TestCase(MpProxySegment.MpCapableSyn, 16, MpProxyMessage.Claim, true)]
    [TestCase(MpProxySegment.MpCapableSyn, 16, MpProxyMessage.Defer, false)]
    [TestCase(MpProxySegment.MpCapableSyn, 16, MpProxyMessage.Offer, false)]
    [TestCase(MpProxySegment.MpCapableSyn, 8, MpProxyMessage.Probe, false)]
    [TestCase(MpProxySegment.MpCapableSyn, 4, MpProxyMessage.Presence, false)]
    [TestCase(MpProxySegment.TcpSyn, 16, MpProxyMessage.Claim, true)]
    [TestCase(MpProxySegment.TcpSyn, 16, MpProxyMessage.Probe, false)]
    [TestCase(MpProxySegment.TcpSyn, 8, MpProxyMessage.Claim, false)]
    [TestCase(MpProxySegment.SynAck, 8, MpProxyMessage.Claim, true)]
    [TestCase(MpProxySegment.SynAck, 8, MpProxyMessage.Defer, true)]
    [TestCase(MpProxySegment.SynAck, 16, MpProxyMessage.Defer, false)]
    [TestCase(MpProxySegment.SynAck, 16, MpProxyMessage.Claim, false)]
    [TestCase(MpProxySegment.SynAck, 8, MpProxyMessage.Probe, false)]
    [TestCase(MpProxySegment.SynAck, 4, MpProxyMessage.Presence, false)]
    [TestCase(MpProxySegment.JoinSyn, 8, MpProxyMessage.Upgrade, true)]
    [TestCase(MpProxySegment.JoinSyn, 8, MpProxyMessage.Claim, false)]
    [TestCase(MpProxySegment.JoinSyn, 16, MpProxyMessage.Upgrade, false)]
    [TestCase(MpProxySegment.JoinSynAck, 4, MpProxyMessage.Presence, true)]
    [TestCase(MpProxySegment.JoinSynAck, 8, MpProxyMessage.Claim, false)]
    public void IsAllowedOn_FollowsTheFormsTable(MpProxySegment segment, int length, MpProxyMessage message, bool allowed)
    {
        var option = length switch
        {
            4 => MpProxyOption.Presence(),
            8 => MpProxyOption.Short(message, 1, 1),
            _ => MpProxyOption.Long(message, 1, 1),
        };
        Assert.That(MpProxyCodec.IsAllowedOn(segment, option), Is.EqualTo(allowed));
    }

    [FsCheckProperty(MaxTest = 3000)]
    public bool TryFind_AnyBytes_NeverThrows(byte[] bytes)
    {
        var status = MpProxyCodec.TryFind(bytes, out var found, out int offset);
        return status == MpProxyStatus.Ok ? offset >= 0 && found.WireLength > 0 : found == default;
    }

    // MSS and timestamps around the MPTCP option, as a kernel sends them; MP_CAPABLE v1 SYN (4 bytes), MP_JOIN SYN (12).
    [TestCase(new byte[] { 2, 4, 5, 0xB4, 30, 4, 0x01, 0x01 }, false, MpProxySegment.MpCapableSyn)]
    [TestCase(new byte[] { 2, 4, 5, 0xB4, 30, 4, 0x00, 0x01 }, false, MpProxySegment.MpCapableSyn)]
    [TestCase(new byte[] { 2, 4, 5, 0xB4, 1, 1, 4, 2 }, false, MpProxySegment.TcpSyn)]
    [TestCase(new byte[] { 30, 12, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 2 }, false, MpProxySegment.JoinSyn)]
    [TestCase(new byte[] { 30, 12, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 2 }, true, MpProxySegment.JoinSynAck)]
    [TestCase(new byte[] { 30, 12, 0x01, 0x81, 1, 2, 3, 4, 5, 6, 7, 8 }, true, MpProxySegment.SynAck)]
    [TestCase(new byte[] { 2, 4, 5, 0xB4 }, true, MpProxySegment.SynAck)]
    public void SegmentOf_ReadsMpJoinAndMpCapableFromTheOptionList(byte[] options, bool synAck, MpProxySegment expected)
    {
        Assert.That(MpProxyCodec.SegmentOf(options, synAck), Is.EqualTo(expected));
    }

    [Test]
    public void Short_PriorityAbove15_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MpProxyOption.Short(MpProxyMessage.Probe, 16, 1));
    }

    [Test]
    public void Long_PresenceKind_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MpProxyOption.Long(MpProxyMessage.Presence, 1, 1));
    }
}
