//! libtorch is installed, links, trains and round-trips a checkpoint on CPU.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

fn net(p: &nn::Path) -> nn::Sequential {
    nn::seq().add(nn::linear(p / "hidden", 4, 8, Default::default())).add_fn(|x| x.relu()).add(nn::linear(
        p / "out",
        8,
        1,
        Default::default(),
    ))
}

#[test]
fn tiny_network_trains_saves_and_loads_identically() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = net(&vs.root());
    let x = Tensor::randn([64, 4], (Kind::Float, Device::Cpu));
    let y = x.sum_dim_intlist(1, true, Kind::Float) * 0.5;
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let loss_of = |m: &dyn Module| m.forward(&x).mse_loss(&y, Reduction::Mean).double_value(&[]);
    let before = loss_of(&model);
    for _ in 0..100 {
        let loss = model.forward(&x).mse_loss(&y, Reduction::Mean);
        opt.backward_step(&loss);
    }
    let after = loss_of(&model);
    assert!(after < before * 0.5, "training did not reduce the loss: {before} -> {after}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.safetensors");
    vs.save(&file).unwrap();

    let mut loaded_vs = nn::VarStore::new(Device::Cpu);
    let loaded = net(&loaded_vs.root());
    loaded_vs.load(&file).unwrap();
    let (a, b) = tch::no_grad(|| (model.forward(&x), loaded.forward(&x)));
    assert!(a.equal(&b), "loaded network gives different outputs");
}
