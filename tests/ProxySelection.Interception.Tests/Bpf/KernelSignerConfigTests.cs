using System.Buffers.Binary;
using ProxySelection.Interception.Bpf;

namespace ProxySelection.Interception.Tests.Bpf;

/// <summary>The config map value the program reads: midstates first, then one 16-byte entry per slot value.</summary>
[TestFixture]
public sealed class KernelSignerConfigTests
{
    [Test]
    public void ConfigValue_MidstatesThenEntriesBySlotValue_ListenerLast()
    {
        var key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var config = new KernelSignerConfig
        {
            Key = key,
            SynAck = new KernelSignedOption([30, 8, 0xF1, 0xA5, 0xA5, 7], 2),
            Syn = new Dictionary<int, KernelSignedOption> { [2] = new([30, 16, 0xF1, 0xA5, 0x95, 7, 3, 0], 8) },
        };
        byte[] value = KernelSigner.ConfigValue(config, 8);
        var (inner, outer) = Sha256Block.HmacMidstates(key);
        Assert.Multiple(() =>
        {
            Assert.That(value, Has.Length.EqualTo(64 + (8 * 16)));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(value), Is.EqualTo(inner[0]));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(value.AsSpan(60)), Is.EqualTo(outer[7]));
            Assert.That(value.AsSpan(64 + 32, 10).ToArray(), Is.EqualTo(new byte[] { 30, 16, 0xF1, 0xA5, 0x95, 7, 3, 0, 8, 8 }));
            Assert.That(value.AsSpan(64 + (7 * 16), 10).ToArray(), Is.EqualTo(new byte[] { 30, 8, 0xF1, 0xA5, 0xA5, 7, 0, 0, 6, 2 }));
            Assert.That(value.AsSpan(64 + 16, 16).ToArray(), Is.All.Zero, "slot 1 unused: prefix length 0, nothing reserved");
        });
    }

    [TestCase(0x0000_0700u, true)]
    [TestCase(0x0000_0003u, false)]   // the intercept and egress marks
    [TestCase(0x0000_0500u, false)]   // not contiguous
    [TestCase(0x0000_0100u, false)]   // one bit: no room for a listener and a slot
    [TestCase(0x0001_F000u, false)]   // five bits: more entries than the program indexes
    public void TryOpen_RejectsBadSlotMasks_BeforeTouchingTheKernel(uint mask, bool valid)
    {
        var config = new KernelSignerConfig { Key = new byte[8] };  // a bad key: a valid mask still fails, on the key
        bool opened = KernelSigner.TryOpen("psel-unit-never", config, mask, out var signer, out string? reason);
        Assert.Multiple(() =>
        {
            Assert.That(opened, Is.False);
            Assert.That(signer, Is.Null);
            Assert.That(reason, valid ? Does.Contain("key of 8 bytes") : Does.Contain("slot mask"));
        });
    }
}
