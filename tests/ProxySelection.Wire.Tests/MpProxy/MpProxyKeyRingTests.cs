using System.Net;
using FsCheckProperty = FsCheck.NUnit.PropertyAttribute;
using ProxySelection.Wire.MpProxy;

// FsCheck.NUnit's [Property] supplies the arguments; the NUnit analyzer cannot see that.
#pragma warning disable NUnit1027

namespace ProxySelection.Wire.Tests.MpProxy;

public class MpProxyKeyRingTests
{
    private static readonly MpProxyOption LongProbe = MpProxyOption.Long(MpProxyMessage.Probe, 4, 11);
    private static readonly MpProxyOption ShortClaim = MpProxyOption.Short(MpProxyMessage.Claim, 4, 11);

    private static MpProxyFlow Flow(uint client, uint server, ushort clientPort, ushort serverPort, uint synIsn, bool synAck, uint synAckIsn, bool v6)
    {
        Span<byte> c = stackalloc byte[16];
        Span<byte> s = stackalloc byte[16];
        new Random((int)client).NextBytes(c);
        new Random((int)server).NextBytes(s);
        var flow = v6 ? MpProxyFlow.ForSyn(c, s, clientPort, serverPort, synIsn) : MpProxyFlow.ForSyn(c[..4], s[..4], clientPort, serverPort, synIsn);
        return synAck ? flow.WithSynAck(synAckIsn) : flow;
    }

    [FsCheckProperty(MaxTest = 500)]
    public bool SignThenVerify_AnyFlowAndForm_VerifiesAndSurvivesTheWire(
        uint client, uint server, ushort clientPort, ushort serverPort, uint synIsn, bool synAck, uint synAckIsn, bool v6, bool longForm, byte proxyId)
    {
        var flow = Flow(client, server, clientPort, serverPort, synIsn, synAck, synAckIsn, v6);
        var option = longForm ? MpProxyOption.Long(MpProxyMessage.Defer, 7, proxyId) : MpProxyOption.Short(MpProxyMessage.Offer, 7, proxyId);
        var ring = MpProxyTestData.Ring();
        ring.Sign(ref option, flow);
        var bytes = MpProxyTestData.Bytes(option);
        return MpProxyCodec.TryRead(bytes, out var read) == MpProxyStatus.Ok && ring.Verify(read, flow);
    }

    [FsCheckProperty(MaxTest = 500)]
    public bool Verify_AnyFlippedTagBit_Rejects(uint synIsn, byte bit, bool longForm)
    {
        var flow = MpProxyTestData.SynV4.WithSynAck(synIsn);
        var option = longForm ? LongProbe : ShortClaim;
        var ring = MpProxyTestData.Ring();
        ring.Sign(ref option, flow);
        var forged = option.WithTag(option.Tag ^ (1UL << (bit % (option.TagLength * 8))), option.KeyId);
        return !ring.Verify(forged, flow);
    }

    [Test]
    public void Verify_WrongKey_Rejects()
    {
        var option = MpProxyTestData.Signed(LongProbe, MpProxyTestData.SynV4);
        var other = new MpProxyKeyRing(1, MpProxyTestData.Key2);
        Assert.Multiple(() =>
        {
            Assert.That(other.Verify(option, MpProxyTestData.SynV4), Is.False);
            Assert.That(other.Verify(MpProxyTestData.Signed(ShortClaim, MpProxyTestData.SynAckV4), MpProxyTestData.SynAckV4), Is.False);
        });
    }

    private static IEnumerable<TestCaseData> OtherFlows()
    {
        var f = MpProxyTestData.SynAckV4;
        var c = f.ClientAddress;
        var s = f.ServerAddress;
        yield return new TestCaseData(MpProxyFlow.ForSyn(IPAddress.Parse("198.18.0.9"), s, f.ClientPort, f.ServerPort, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("OtherClientAddress");
        yield return new TestCaseData(MpProxyFlow.ForSyn(c, IPAddress.Parse("198.19.0.9"), f.ClientPort, f.ServerPort, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("OtherServerAddress");
        yield return new TestCaseData(MpProxyFlow.ForSyn(c, s, (ushort)(f.ClientPort + 1), f.ServerPort, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("OtherClientPort");
        yield return new TestCaseData(MpProxyFlow.ForSyn(c, s, f.ClientPort, 80, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("OtherServerPort");
        yield return new TestCaseData(MpProxyFlow.ForSyn(c, s, f.ClientPort, f.ServerPort, f.SynIsn + 1).WithSynAck(f.SynAckIsn)).SetName("OtherSynIsn");
        yield return new TestCaseData(f.WithSynAck(f.SynAckIsn + 1)).SetName("OtherSynAckIsn");
        yield return new TestCaseData(MpProxyFlow.ForSyn(c, s, f.ClientPort, f.ServerPort, f.SynIsn)).SetName("SameFlowButOnTheSyn");
        yield return new TestCaseData(MpProxyFlow.ForSyn(s, c, f.ServerPort, f.ClientPort, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("ReversedOrientation");
        yield return new TestCaseData(MpProxyFlow.ForSyn(IPAddress.Parse("::ffff:198.18.0.1"), IPAddress.Parse("::ffff:198.19.0.2"), f.ClientPort, f.ServerPort, f.SynIsn).WithSynAck(f.SynAckIsn)).SetName("SameAddressesAsV4Mapped");
    }

    [TestCaseSource(nameof(OtherFlows))]
    public void Verify_TagReplayedOnAnotherFlowOrIsn_Rejects(MpProxyFlow other)
    {
        var ring = MpProxyTestData.Ring();
        var longOption = MpProxyTestData.Signed(LongProbe, MpProxyTestData.SynAckV4);
        var shortOption = MpProxyTestData.Signed(ShortClaim, MpProxyTestData.SynAckV4);
        Assert.Multiple(() =>
        {
            Assert.That(ring.Verify(longOption, MpProxyTestData.SynAckV4), Is.True, "sanity: the original flow verifies");
            Assert.That(ring.Verify(longOption, other), Is.False, "long form");
            // 16 bits collide with probability 2^-16; the fixed vectors here are known not to.
            Assert.That(ring.Verify(shortOption, other), Is.False, "short form");
        });
    }

    [Test]
    public void Verify_FieldChangedAfterSigning_Rejects()
    {
        var ring = MpProxyTestData.Ring();
        var signed = MpProxyTestData.Signed(LongProbe, MpProxyTestData.SynV4);
        var raisedPriority = MpProxyOption.Long(MpProxyMessage.Probe, 15, 11, keyId: signed.KeyId, tag: signed.Tag);
        var otherKind = MpProxyOption.Long(MpProxyMessage.Claim, 4, 11, keyId: signed.KeyId, tag: signed.Tag);
        var atCapacity = MpProxyOption.Long(MpProxyMessage.Probe, 4, 11, atCapacity: true, keyId: signed.KeyId, tag: signed.Tag);
        Assert.Multiple(() =>
        {
            Assert.That(ring.Verify(raisedPriority, MpProxyTestData.SynV4), Is.False);
            Assert.That(ring.Verify(otherKind, MpProxyTestData.SynV4), Is.False);
            Assert.That(ring.Verify(atCapacity, MpProxyTestData.SynV4), Is.False);
        });
    }

    [Test]
    public void Verify_ReservedFlagBitsSetBySender_AreCoveredAndStillVerify()
    {
        // A later sender may set reserved bits; v1 ignores their meaning but the tag covers the bytes as sent.
        var ring = MpProxyTestData.Ring();
        var bytes = MpProxyTestData.Bytes(LongProbe);
        bytes[7] = 0x01;
        Assert.That(MpProxyCodec.TryRead(bytes, out var withReserved), Is.EqualTo(MpProxyStatus.Ok));
        ring.Sign(ref withReserved, MpProxyTestData.SynV4);
        var wire = MpProxyTestData.Bytes(withReserved);
        Assert.Multiple(() =>
        {
            Assert.That(MpProxyCodec.TryRead(wire, out var read), Is.EqualTo(MpProxyStatus.Ok));
            Assert.That(ring.Verify(read, MpProxyTestData.SynV4), Is.True);
            Assert.That(read.Flags, Is.EqualTo(0x01));
        });
    }

    [Test]
    public void Verify_Presence_IsNeverVerified()
    {
        Assert.That(MpProxyTestData.Ring().Verify(MpProxyOption.Presence(), MpProxyTestData.SynAckV4), Is.False);
    }

    [Test]
    public void Verify_UnsignedOption_Rejects()
    {
        Assert.That(MpProxyTestData.Ring().Verify(LongProbe, MpProxyTestData.SynV4), Is.False);
    }

    [Test]
    public void Sign_Long_SetsCurrentKeyId()
    {
        var ring = MpProxyTestData.Ring();
        ring.Rotate(2, MpProxyTestData.Key2);
        var option = LongProbe;
        ring.Sign(ref option, MpProxyTestData.SynV4);
        Assert.That(option.KeyId, Is.EqualTo(2));
    }

    [Test]
    public void Rotate_PreviousKeyVerifiesDuringWindowNotAfterRetirement()
    {
        var ring = MpProxyTestData.Ring();
        var oldLong = MpProxyTestData.Signed(LongProbe, MpProxyTestData.SynV4);
        var oldShort = MpProxyTestData.Signed(ShortClaim, MpProxyTestData.SynAckV4);

        ring.Rotate(2, MpProxyTestData.Key2);
        var newLong = LongProbe;
        ring.Sign(ref newLong, MpProxyTestData.SynV4);
        var newShort = ShortClaim;
        ring.Sign(ref newShort, MpProxyTestData.SynAckV4);
        Assert.Multiple(() =>
        {
            Assert.That(ring.PreviousKeyId, Is.EqualTo(1));
            Assert.That(ring.Verify(oldLong, MpProxyTestData.SynV4), Is.True, "old long form in window");
            Assert.That(ring.Verify(oldShort, MpProxyTestData.SynAckV4), Is.True, "old short form in window");
            Assert.That(ring.Verify(newLong, MpProxyTestData.SynV4), Is.True, "new long form");
            Assert.That(ring.Verify(newShort, MpProxyTestData.SynAckV4), Is.True, "new short form");
        });

        ring.RetirePrevious();
        Assert.Multiple(() =>
        {
            Assert.That(ring.PreviousKeyId, Is.Null);
            Assert.That(ring.Verify(oldLong, MpProxyTestData.SynV4), Is.False, "old long form after retirement");
            Assert.That(ring.Verify(oldShort, MpProxyTestData.SynAckV4), Is.False, "old short form after retirement");
            Assert.That(ring.Verify(newLong, MpProxyTestData.SynV4), Is.True, "new long form after retirement");
            Assert.That(ring.Verify(newShort, MpProxyTestData.SynAckV4), Is.True, "new short form after retirement");
        });
    }

    [Test]
    public void AcceptNext_TwoPhaseRotation_ProxiesOnEitherSideOfTheSwitchUnderstandEachOther()
    {
        var early = MpProxyTestData.Ring();
        var late = MpProxyTestData.Ring();
        early.AcceptNext(2, MpProxyTestData.Key2);
        late.AcceptNext(2, MpProxyTestData.Key2);
        early.Rotate(2, MpProxyTestData.Key2); // switched; "late" still signs with key 1

        var fromEarly = ShortClaim;
        early.Sign(ref fromEarly, MpProxyTestData.SynAckV4);
        var fromLate = LongProbe;
        late.Sign(ref fromLate, MpProxyTestData.SynV4);
        Assert.Multiple(() =>
        {
            Assert.That(fromLate.KeyId, Is.EqualTo(1));
            Assert.That(late.Verify(fromEarly, MpProxyTestData.SynAckV4), Is.True, "late verifies the new key before signing with it");
            Assert.That(early.Verify(fromLate, MpProxyTestData.SynV4), Is.True, "early still verifies the old key");
        });
    }

    [Test]
    public void ReplaceWith_NextStepOfARotation_SignsAndVerifiesWithTheOtherRingsKeys()
    {
        var live = MpProxyTestData.Ring();
        var switched = new MpProxyKeyRing(2, MpProxyTestData.Key2);
        switched.AcceptNext(1, MpProxyTestData.Key1);

        live.ReplaceWith(switched);
        var signed = LongProbe;
        live.Sign(ref signed, MpProxyTestData.SynV4);
        Assert.Multiple(() =>
        {
            Assert.That(live.CurrentKeyId, Is.EqualTo(2));
            Assert.That(live.PreviousKeyId, Is.EqualTo(1));
            Assert.That(signed.KeyId, Is.EqualTo(2));
            Assert.That(new MpProxyKeyRing(2, MpProxyTestData.Key2).Verify(signed, MpProxyTestData.SynV4), Is.True, "signed with the new key");
            Assert.That(live.Verify(MpProxyTestData.Signed(ShortClaim, MpProxyTestData.SynAckV4), MpProxyTestData.SynAckV4), Is.True, "the old key still verifies");
        });
    }

    [Test]
    public void FindConflict_SameIdOtherKey_NamesTheId()
    {
        var live = MpProxyTestData.Ring();
        live.AcceptNext(2, MpProxyTestData.Key2);

        Assert.Multiple(() =>
        {
            Assert.That(live.FindConflict(new MpProxyKeyRing(2, MpProxyTestData.Key1)), Is.EqualTo(2), "id 2 names Key2 here");
            Assert.That(live.FindConflict(new MpProxyKeyRing(1, MpProxyTestData.Key2)), Is.EqualTo(1), "id 1 names Key1 here");
        });
    }

    [Test]
    public void FindConflict_SameKeysOrNewIds_None()
    {
        var live = MpProxyTestData.Ring();
        var nextStep = new MpProxyKeyRing(1, MpProxyTestData.Key1);
        nextStep.AcceptNext(3, MpProxyTestData.Key2);

        Assert.Multiple(() =>
        {
            Assert.That(live.FindConflict(MpProxyTestData.Ring()), Is.Null);
            Assert.That(live.FindConflict(nextStep), Is.Null);
            Assert.That(live.FindConflict(new MpProxyKeyRing(4, MpProxyTestData.Key2)), Is.Null);
        });
    }

    [Test]
    public void AcceptNext_CurrentKeyId_Throws()
    {
        Assert.Throws<ArgumentException>(() => MpProxyTestData.Ring().AcceptNext(1, MpProxyTestData.Key2));
    }

    [Test]
    public void Verify_LongFormNamingUnknownKeyId_Rejects()
    {
        var ring = MpProxyTestData.Ring();
        var signed = MpProxyTestData.Signed(LongProbe, MpProxyTestData.SynV4);
        // Same bytes, key id changed: no key 9 in the ring (and the key id is covered by the tag anyway).
        Assert.That(ring.Verify(signed.WithTag(signed.Tag, 9), MpProxyTestData.SynV4), Is.False);
    }

    [Test]
    public void Rotate_SameKeyId_Throws()
    {
        Assert.Throws<ArgumentException>(() => MpProxyTestData.Ring().Rotate(1, MpProxyTestData.Key2));
    }

    [Test]
    public void Constructor_ShortKey_Throws()
    {
        Assert.Throws<ArgumentException>(() => _ = new MpProxyKeyRing(1, new byte[15]));
    }

    [Test]
    public void WriteTagInput_V4SynAck_HasTheDocumentedLayout()
    {
        var option = MpProxyOption.Short(MpProxyMessage.Claim, 4, 11);
        var input = new byte[80];
        int n = MpProxyKeyRing.WriteTagInput(input, option, MpProxyTestData.SynAckV4);
        // label 26, segment 1, header 6, family 1, addresses 8, ports 4, ISNs 8.
        Assert.Multiple(() =>
        {
            Assert.That(n, Is.EqualTo(54));
            Assert.That(input[26], Is.EqualTo(2), "segment: SYN/ACK");
            Assert.That(input[33], Is.EqualTo(4), "family");
        });
    }
}
