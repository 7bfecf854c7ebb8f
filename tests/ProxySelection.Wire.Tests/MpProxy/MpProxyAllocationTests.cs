using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Wire.Tests.MpProxy;

/// <summary>The hot path (read, verify, sign, write) allocates nothing per packet.</summary>
public class MpProxyAllocationTests
{
    [Test]
    public void HotPath_ReadVerifySignWrite_AllocatesNothing()
    {
        var ring = MpProxyTestData.Ring();
        var flow = MpProxyTestData.SynAckV4;
        var wire = MpProxyTestData.Bytes(MpProxyTestData.Signed(MpProxyOption.Short(MpProxyMessage.Defer, 4, 9), flow));
        var output = new byte[16];
        int verified = 0;

        void Once()
        {
            if (MpProxyCodec.TryRead(wire, out var read) == MpProxyStatus.Ok && ring.Verify(read, flow))
            {
                verified++;
            }

            var answer = MpProxyOption.Long(MpProxyMessage.Claim, 4, 9);
            ring.Sign(ref answer, MpProxyTestData.SynV4);
            MpProxyCodec.Write(output, answer);
        }

        Once(); // first calls may initialise the crypto provider
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            Once();
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Multiple(() =>
        {
            Assert.That(verified, Is.EqualTo(101));
            Assert.That(allocated, Is.Zero);
        });
    }
}
